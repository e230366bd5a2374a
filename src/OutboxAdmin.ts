/**
 * The admin board: `import * as OutboxAdmin from "effect-outbox/OutboxAdmin"`. See `admin/OutboxAdmin.ts` for the
 * routes, the security model and the options; `admin/AdminApi.ts` for the JSON API.
 */
export * from "./admin/OutboxAdmin.js"
