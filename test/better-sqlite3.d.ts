// Minimal typing of the better-sqlite3 surface the tests use to play "another connection".
declare module "better-sqlite3" {
  namespace Database {
    interface Database {
      exec(sql: string): Database
      prepare(
        sql: string
      ): { run(...params: ReadonlyArray<unknown>): unknown; all(...params: ReadonlyArray<unknown>): Array<unknown> }
      close(): void
    }
  }
  const Database: new(filename: string, options?: { readonly timeout?: number }) => Database.Database
  export default Database
}
