/**
 * The board's page: one HTML document, one stylesheet and one script (`AdminScript`), served by the board itself;
 * no build step and nothing fetched from elsewhere. The document holds no data: the script asks the API and builds
 * every element with `textContent`, so a reply's text is shown as text whatever it contains. `base` is where the
 * board is mounted (`/` or the gateway's prefix), so every URL of the page is relative to it.
 */
import { script as boardScript } from "./AdminScript.js"

const escapeAttribute = (value: string): string =>
  value.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

/** The document, for a board mounted at `base` (ends with `/`). */
export const html = (base: string): string =>
  `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<base href="${escapeAttribute(base)}">
<title>effect-outbox board</title>
<link rel="stylesheet" href="board.css">
<script src="board.js" defer></script>
</head>
<body>
<header>
  <h1>effect-outbox</h1>
  <span id="mode" class="pill"></span>
  <span id="asof" class="muted"></span>
  <span class="grow"></span>
  <button id="refresh" type="button">Refresh</button>
  <button id="logout" type="button" hidden>Log out</button>
</header>
<main>
  <section id="login" class="panel" hidden>
    <h2>This board needs its token</h2>
    <form id="login-form">
      <label>Admin token <input type="password" id="token" autocomplete="current-password" required></label>
      <button type="submit">Log in</button>
    </form>
    <p id="login-error" class="error" role="alert"></p>
  </section>
  <div id="board" hidden>
    <section id="cards" class="cards" aria-label="counts"></section>
    <div class="two">
      <section class="panel">
        <h2>Last hour <span class="legend"><i class="ok"></i>delivered <i class="bad"></i>failed, retrying or expired</span></h2>
        <div id="spark" class="spark"></div>
        <p id="spark-note" class="muted small"></p>
      </section>
      <section class="panel">
        <h2>By channel</h2>
        <div class="scroll"><table id="channels" class="grid"></table></div>
      </section>
    </div>
    <section class="panel">
      <h2>Entries</h2>
      <form id="filters" class="filters">
        <label>State <select id="f-state">
          <option value="">any</option>
          <option>queued</option><option>in_flight</option><option>failed_retryable</option>
          <option>failed_terminal</option><option>expired</option><option>delivered</option>
        </select></label>
        <label>Channel <input id="f-channel" list="channel-names" autocomplete="off"></label>
        <datalist id="channel-names"></datalist>
        <label>Conversation <input id="f-conversation" placeholder="recipient id" autocomplete="off"></label>
        <button type="submit">Apply</button>
        <button type="button" id="f-reset">Reset</button>
      </form>
      <div class="actions">
        <button type="button" id="retry-all" class="danger" hidden>Retry all matching…</button>
        <button type="button" id="prune" class="danger" hidden>Prune old entries…</button>
      </div>
      <div class="scroll">
        <table id="entries" class="grid entries">
          <thead><tr>
            <th>age</th><th>state</th><th>channel</th><th>to</th><th>kind</th>
            <th>attempts</th><th>reply</th><th>last error</th>
          </tr></thead>
          <tbody></tbody>
        </table>
      </div>
      <p id="entries-empty" class="muted" hidden>No entries match.</p>
      <div class="pager">
        <button type="button" id="newest">Newest</button>
        <button type="button" id="newer">← Newer</button>
        <button type="button" id="older">Older →</button>
      </div>
    </section>
    <section id="feed-panel" class="panel" hidden>
      <h2>Live <span class="muted small">this gateway's outbox events</span></h2>
      <ol id="feed" class="feed"></ol>
    </section>
  </div>
  <p id="error" class="error" role="alert"></p>
</main>
<aside id="entry" class="entry" hidden aria-label="entry">
  <div class="entry-head">
    <h2 id="entry-title">Entry</h2>
    <span class="grow"></span>
    <button type="button" id="entry-retry" class="danger" hidden>Retry…</button>
    <button type="button" id="entry-close">Close</button>
  </div>
  <div id="entry-body"></div>
</aside>
<dialog id="confirm">
  <form method="dialog">
    <p id="confirm-text"></p>
    <div class="actions">
      <button value="cancel" type="submit">Cancel</button>
      <button value="ok" type="submit" id="confirm-ok" class="danger">Confirm</button>
    </div>
  </form>
</dialog>
</body>
</html>
`

/** The stylesheet: readable at 1280 px and on a phone (390 px), light and dark. */
export const css =
  `:root{--bg:#f6f7f9;--fg:#1c2230;--muted:#667085;--panel:#fff;--line:#e3e6ec;--ok:#1f9d55;--bad:#d64545;
--warn:#c27c0e;--info:#2f6fd6;--pill:#eef1f6;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;font-size:15px}
@media (prefers-color-scheme:dark){:root{--bg:#11141a;--fg:#e6e9ef;--muted:#98a2b3;--panel:#1a1f27;--line:#2b313c;--pill:#252b35}}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg)}
header{display:flex;align-items:center;gap:.6rem;flex-wrap:wrap;padding:.7rem 1rem;background:var(--panel);
border-bottom:1px solid var(--line);position:sticky;top:0;z-index:2}
h1{font-size:1.15rem;margin:0}h2{font-size:1rem;margin:0 0 .6rem}.grow{flex:1}
main{padding:1rem;max-width:1400px;margin:0 auto}
.panel{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:.8rem 1rem;margin-bottom:1rem;min-width:0}
.two{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1rem;margin-bottom:1rem}.two>.panel{margin-bottom:0}
.cards{display:grid;grid-template-columns:repeat(6,1fr);gap:.7rem;margin-bottom:1rem}
.card{background:var(--panel);border:1px solid var(--line);border-radius:8px;padding:.6rem .8rem;cursor:pointer;text-align:left;
font:inherit;color:inherit}
.card .n{font-size:1.6rem;font-weight:600;display:block;font-variant-numeric:tabular-nums}.card .l{color:var(--muted);font-size:.85rem}
.card.bad .n{color:var(--bad)}.card.warn .n{color:var(--warn)}.card.ok .n{color:var(--ok)}
.muted{color:var(--muted)}.small{font-size:.82rem}.error{color:var(--bad);white-space:pre-wrap}
.pill{background:var(--pill);border-radius:99px;padding:.15rem .6rem;font-size:.8rem}
button{font:inherit;padding:.35rem .75rem;border:1px solid var(--line);border-radius:6px;background:var(--pill);color:inherit;
cursor:pointer}button:disabled{opacity:.45;cursor:default}button.danger{border-color:var(--bad);color:var(--bad)}
input,select{font:inherit;padding:.3rem .45rem;border:1px solid var(--line);border-radius:6px;background:var(--panel);
color:inherit;max-width:100%}
label{display:inline-flex;flex-direction:column;font-size:.8rem;color:var(--muted);gap:.15rem}
.filters{display:flex;flex-wrap:wrap;gap:.6rem;align-items:flex-end;margin-bottom:.6rem}
.actions{display:flex;gap:.6rem;flex-wrap:wrap;margin:.4rem 0}
.scroll{overflow-x:auto}
table.grid{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
.grid th,.grid td{padding:.35rem .5rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
.grid th{font-size:.78rem;color:var(--muted);font-weight:600}.grid td.num,.grid th.num{text-align:right}
button.link{border:0;background:none;color:var(--info);padding:0;text-decoration:underline;font-family:ui-monospace,monospace;font-size:.85em}.grid td button.link{font-family:inherit;font-size:inherit}
.entries tbody tr{cursor:pointer}.entries tbody tr:hover{background:var(--pill)}
.entries td.age,.entries td.st,.entries td.ch,.entries td.to{white-space:nowrap}
.entries td.reply{max-width:28rem;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.entries td.err{max-width:22rem;color:var(--bad);overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.state{border-radius:4px;padding:.05rem .35rem;font-size:.8rem;white-space:nowrap;background:var(--pill)}
.state.delivered{color:var(--ok)}.state.failed_terminal,.state.expired{color:var(--bad)}
.state.failed_retryable{color:var(--warn)}.state.in_flight,.state.queued{color:var(--info)}
.pager{display:flex;gap:.5rem;justify-content:flex-end;margin-top:.6rem}
.spark svg{width:100%;height:90px;display:block}.legend{font-weight:400;font-size:.8rem;color:var(--muted);margin-left:.6rem}
.legend i{display:inline-block;width:.7rem;height:.7rem;border-radius:2px;margin:0 .25rem 0 .6rem;vertical-align:-1px}
.legend i.ok,.bar-ok{background:var(--ok);fill:var(--ok)}.legend i.bad,.bar-bad{background:var(--bad);fill:var(--bad)}
.feed{list-style:none;margin:0;padding:0;max-height:18rem;overflow-y:auto;font-size:.85rem}
.feed li{padding:.25rem 0;border-bottom:1px solid var(--line);display:flex;gap:.5rem;flex-wrap:wrap}
.entry{position:fixed;top:0;right:0;bottom:0;width:min(640px,100%);background:var(--panel);border-left:1px solid var(--line);
overflow-y:auto;padding:1rem;z-index:3;box-shadow:-8px 0 24px rgba(0,0,0,.15)}
.entry-head{display:flex;gap:.5rem;align-items:center;margin-bottom:.6rem;position:sticky;top:-1rem;background:var(--panel);
padding:.4rem 0}.entry h3{font-size:.9rem;margin:1rem 0 .4rem}
dl.fields{display:grid;grid-template-columns:max-content 1fr;gap:.2rem .8rem;margin:0;font-size:.88rem}
dl.fields dt{color:var(--muted)}dl.fields dd{margin:0;overflow-wrap:anywhere}
.part{border:1px solid var(--line);border-radius:6px;padding:.4rem .6rem;margin-bottom:.4rem}
.part.done{border-color:var(--ok)}.part .mark{font-size:.8rem;font-weight:600}.part.done .mark{color:var(--ok)}
.part:not(.done) .mark{color:var(--warn)}
pre.text{white-space:pre-wrap;overflow-wrap:anywhere;margin:.3rem 0 0;font-size:.85rem;font-family:ui-monospace,monospace}
ol.timeline{margin:0;padding-left:1.2rem;font-size:.86rem}ol.timeline li{margin-bottom:.25rem}
dialog{border:1px solid var(--line);border-radius:8px;background:var(--panel);color:var(--fg);max-width:min(30rem,92vw)}
@media (max-width:1000px){.cards{grid-template-columns:repeat(3,1fr)}.two{grid-template-columns:1fr}}
@media (max-width:700px){main{padding:.6rem}.cards{grid-template-columns:repeat(2,1fr)}.filters label{flex:1 1 40%}
header{padding:.5rem .6rem;position:static}.card .n{font-size:1.3rem}
.entries thead{display:none}.entries tbody tr{display:grid;grid-template-columns:auto minmax(0,1fr) auto;
grid-template-areas:"st ch age" "to to tries" "reply reply reply" "err err err";border-bottom:1px solid var(--line);padding:.4rem 0}
.entries td{border:0;padding:.05rem .3rem}.entries td.age{grid-area:age;color:var(--muted)}.entries td.st{grid-area:st}
.entries td.ch{grid-area:ch}.entries td.to{grid-area:to;color:var(--muted)}.entries td.kind{display:none}
.entries td.tries{grid-area:tries;color:var(--muted)}.entries td.tries::after{content:" attempts"}
.entries td.reply{grid-area:reply;max-width:none;white-space:normal}.entries td.err{grid-area:err;max-width:none}
.entries td.err:empty{display:none}}
`

/** The script (see `AdminScript`). */
export const script = boardScript
