export const html = (base: string) => `<html><head><base href="${base}"></head></html>`
export const script = ""
export const css = ""
