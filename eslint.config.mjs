// ESLint as Effect's own repository sets it up: TypeScript rules, and formatting by @effect/eslint-plugin's dprint rule.
import * as effectEslint from "@effect/eslint-plugin"
import eslint from "@eslint/js"
import tseslint from "typescript-eslint"

export default tseslint.config(
  { ignores: ["**/dist", "**/node_modules", "bench/.build", "test/fixtures"] },
  eslint.configs.recommended,
  ...tseslint.configs.recommended,
  ...effectEslint.configs.dprint,
  {
    // the CLI launcher is plain JavaScript run by Node
    files: ["bin/**/*.js"],
    languageOptions: { globals: { process: "readonly", URL: "readonly", console: "readonly" } }
  },
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-explicit-any": "error",
      // Effect's idioms: \`interface Entry extends Schema.Type<…> {}\` and \`Data.TaggedEnum<{ Reclaim: {} }>\`
      "@typescript-eslint/no-empty-object-type": ["error", {
        allowInterfaces: "with-single-extends",
        allowObjectTypes: "always"
      }],
      "@effect/dprint": ["error", {
        config: {
          indentWidth: 2,
          lineWidth: 120,
          semiColons: "asi",
          quoteStyle: "alwaysDouble",
          trailingCommas: "never",
          operatorPosition: "maintain",
          "arrowFunction.useParentheses": "force"
        }
      }]
    }
  }
)
