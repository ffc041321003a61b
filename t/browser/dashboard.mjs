// The dashboard in a real browser (issue #17): Debian's chromium driven by
// playwright-core, against the daemon t/integration/test_dashboard.sh
// started.  Prints TAP lines ("ok N - ..." / "not ok N - ..."); the shell
// test counts them.  Arguments come from the environment:
//   URL        the dashboard (http://127.0.0.1:PORT/)
//   TOKEN      the HTTP token
//   MIG_RULE, MIG_VM     a migration rule whose job is transferring, slowly
//   XSS_RULE, XSS_VM     a backup rule whose VM has a hostile name
//   CTL        a command printing `vmferryctl --json` output: "$CTL stats"
//   SHOT       where the screenshot goes
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";

const env = process.env;
let n = 0, failed = 0;
const ok = (cond, what) => {
  n++;
  if (cond) console.log(`ok ${n} - ${what}`);
  else { failed++; console.log(`not ok ${n} - ${what}`); }
  return cond;
};
const ctl = (...args) => JSON.parse(execFileSync("bash", ["-c", `${env.CTL} --json ${args.join(" ")}`]).toString());
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const key = (kind, rule, vm) => `${kind}/${rule}/${vm}`;

const browser = await chromium.launch({ executablePath: env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  const dialogs = [], errors = [];
  page.on("dialog", async (d) => {
    dialogs.push(d.message());
    // The test's own prompts (confirm, point) are answered; alert() is the script injection.
    if (d.type() === "alert") await d.dismiss(); else await d.accept();
  });
  page.on("pageerror", (e) => errors.push(e.message));
  const row = (k) => page.locator(`tr.job[data-key="${k.replace(/"/g, '\\"')}"]`);
  const mig = key("migration", env.MIG_RULE, env.MIG_VM);

  // ---- the page loads and goes live ----
  await page.goto(env.URL);
  ok((await page.title()) === "vmferry", "the page loads (title vmferry)");
  await page.waitForSelector("#message.error", { timeout: 10000 }).catch(() => {});
  const first = await page.locator("#message").innerText();
  ok(/401/.test(first) && await page.locator("tr.job").count() === 0, `without the token the page shows no job: ${first}`);
  await page.fill("#token", env.TOKEN);
  await page.click('#tokenform button[type="submit"]');
  await page.waitForSelector("#conn.up", { timeout: 10000 }).catch(() => {});
  ok(await page.locator("#conn.up").count() === 1, "the event stream is connected (/api/v1/events)");
  await row(mig).waitFor({ timeout: 10000 });
  ok(await row(mig).count() === 1, `the migration job ${env.MIG_RULE}/${env.MIG_VM} is listed`);

  // ---- progress moves, states follow the FSM, with both labels ----
  const seen = [], values = [];
  const t0 = Date.now();
  while (Date.now() - t0 < 90000) {
    const st = await row(mig).locator("td.state").getAttribute("data-state");
    const label = (await row(mig).locator("td.state").innerText()).replace(/\s+/g, " ").trim();
    if (seen.length === 0 || seen[seen.length - 1].state !== st) seen.push({ state: st, label });
    if (st === "transferring") values.push(Number(await row(mig).locator("td.progress").getAttribute("data-progress")));
    if (st === "ready" || st === "complete" || st === "failed") break;
    await sleep(150);
  }
  const moves = values.filter((v, i) => i > 0 && v > values[i - 1]).length;
  ok(moves >= 2, `the progress bar moved while transferring (${values.length} samples, ${moves} rises: ${[...new Set(values)].slice(0, 12).join(",")}...)`);
  const order = ["starting", "queued", "creating_vm", "fetching_config", "querying_changes", "transferring", "ready"];
  const idx = seen.map((s) => order.indexOf(s.state));
  ok(idx.every((v, i) => v >= 0 && (i === 0 || v > idx[i - 1])) && seen.length >= 2 && seen[seen.length - 1].state === "ready",
    `the state labels followed the FSM to 迁移就绪: ${seen.map((s) => s.state).join(" -> ")}`);
  const want = { transferring: "迁移中 Transferring", ready: "迁移就绪 Ready to migrate" };
  ok(seen.filter((s) => want[s.state]).every((s) => s.label === want[s.state]),
    `labels in Chinese and English: ${seen.map((s) => s.label).join(" | ")}`);

  // ---- the traffic graph of the job ----
  await row(mig).locator("td.vm").click();
  await page.waitForFunction(() => window.vmferry.charts.traffic !== undefined, null, { timeout: 10000 }).catch(() => {});
  const traffic = await page.evaluate(() => {
    const c = window.vmferry.charts.traffic;
    return c ? c.data.datasets[0].data.reduce((a, b) => a + b, 0) * 10 * 1048576 : -1;
  });
  ok(traffic > 0, `the per-VM traffic graph shows what moved in the last hour (${Math.round(traffic)} bytes)`);
  ok(await page.locator("#log li").count() > 0, "the job's log is shown");

  // ---- a command without the token is refused, with it the job completes ----
  const migrate = row(mig).locator('button[data-op="migrate"]');
  ok(await migrate.isEnabled(), "开始迁移 is enabled in 迁移就绪");
  ok(await row(mig).locator('button[data-op="start"]').isDisabled(), "start is disabled while the job is ready (its FSM would ignore it)");
  await page.fill("#token", "");
  await page.click('#tokenform button[type="submit"]');
  await migrate.click();
  await page.waitForSelector("#message.error", { timeout: 10000 }).catch(() => {});
  const refusal = await page.locator("#message").innerText();
  ok(/401|403/.test(refusal), `without the token 开始迁移 is refused: ${refusal}`);
  await sleep(1000);
  ok(ctl("jobs", env.MIG_RULE).jobs[0].state === "ready", "and the job is still 迁移就绪 (vmferryctl jobs)");
  await page.fill("#token", env.TOKEN);
  await page.click('#tokenform button[type="submit"]');
  await migrate.click();
  await page.waitForFunction((k) => {
    const td = document.querySelector(`tr.job[data-key="${CSS.escape(k)}"] td.state`);
    return td && td.dataset.state === "complete";
  }, mig, { timeout: 120000 }).catch(() => {});
  const done = (await row(mig).locator("td.state").innerText()).replace(/\s+/g, " ").trim();
  ok(done === "完成 Complete", `with the token 开始迁移 runs the cutover: the row shows ${done}`);
  ok(ctl("jobs", env.MIG_RULE).jobs[0].state === "complete", "vmferryctl jobs says complete too");

  // ---- replication: a restore point, 临时切换 and 回切 from the buttons ----
  const stateOf = async (k) => row(k).locator("td.state").getAttribute("data-state");
  const waitState = (k, states, ms) => page.waitForFunction(([k, states]) => {
    const td = document.querySelector(`tr.job[data-key="${CSS.escape(k)}"] td.state`);
    return td && states.includes(td.dataset.state);
  }, [k, states], { timeout: ms }).then(() => true, () => false);
  const rep = key("replication", env.REP_RULE, env.REP_VM);
  ok(await waitState(rep, ["complete", "idle"], 120000), `the replication's first cycle ends (${await stateOf(rep)})`);
  await row(rep).locator("td.vm").click();
  await page.waitForFunction(() => document.querySelectorAll("#points tbody tr").length >= 1, null, { timeout: 10000 }).catch(() => {});
  ok(await page.locator("#points tbody tr").count() === 1, "its restore point is listed in the detail");
  await row(rep).locator('button[data-op="failover"]').click();
  const fo = await waitState(rep, ["failover_temporary"], 60000);
  ok(fo && (await row(rep).locator("td.state").innerText()).replace(/\s+/g, " ").trim() === "临时切换 Temporary failover",
    "临时切换 from its button: the row shows 临时切换 Temporary failover");
  ok(await row(rep).locator('button[data-op="failback"]').isEnabled() && await row(rep).locator('button[data-op="run"]').isDisabled(),
    "in 临时切换 回切 is enabled and 立即执行 is not");
  await row(rep).locator('button[data-op="failback"]').click();
  ok(await waitState(rep, ["complete", "idle"], 60000), `回切 from its button: the job is back at rest (${await stateOf(rep)})`);

  // ---- backup: 立即执行 makes a point ----
  const bak = key("backup", env.BAK_RULE, env.BAK_VM);
  await row(bak).locator("td.vm").click();
  await row(bak).locator('button[data-op="run"]').click();
  const ran = await waitState(bak, ["transferring", "querying_changes", "checking_data", "saving_config", "preparing", "queued"], 20000);
  ok(ran && await waitState(bak, ["idle", "complete"], 120000), `立即执行 on the backup job: it ran and rests (${await stateOf(bak)})`);
  await page.waitForFunction(() => document.querySelectorAll("#points tbody tr").length >= 1, null, { timeout: 10000 }).catch(() => {});
  ok(await page.locator("#points tbody tr").count() === 1 && /full/.test(await page.locator("#points tbody tr").first().innerText()),
    "the backup's restore point (a full) is listed in the detail");

  // ---- a hostile VM name is text ----
  const xss = row(key("backup", env.XSS_RULE, env.XSS_VM));
  ok(await xss.count() === 1 && (await xss.locator("td.vm").innerText()) === env.XSS_VM,
    "a VM named <img src=x onerror=alert(1)> is shown as that text");
  ok(await page.locator("#jobs img").count() === 0 && !dialogs.some((d) => d === "1"), "and no markup of it ran (no img element, no alert)");

  // ---- statistics: the charts count what vmferryctl stats counts ----
  const badge = Number(await page.locator("#unviewed").innerText());
  ok(badge >= 1, `the unviewed-error count shows the failed job's error (${badge})`);
  const before = ctl("jobs");
  ok(before.jobs.reduce((a, j) => a + j.unviewed_errors, 0) === badge, "as many as vmferryctl jobs counts");
  await page.click("#errors");
  await page.waitForFunction(() => window.vmferry.charts.bar !== undefined, null, { timeout: 10000 }).catch(() => {});
  const charts = await page.evaluate(() => {
    const b = window.vmferry.charts.bar, p = window.vmferry.charts.pie;
    return b && p ? { labels: b.data.labels, s: b.data.datasets[0].data, f: b.data.datasets[1].data, pie: p.data.datasets[0].data } : null;
  });
  const stats = ctl("stats");
  const rules = stats.rules.map((r) => `${r.rule} (${r.kind})`);
  ok(charts && JSON.stringify(charts.labels) === JSON.stringify(rules) &&
    JSON.stringify(charts.s) === JSON.stringify(stats.rules.map((r) => r.successes)) &&
    JSON.stringify(charts.f) === JSON.stringify(stats.rules.map((r) => r.failures)),
    `the bar chart counts equal vmferryctl stats: ${JSON.stringify(charts && [charts.s, charts.f])}`);
  const totS = stats.rules.reduce((a, r) => a + r.successes, 0), totF = stats.rules.reduce((a, r) => a + r.failures, 0);
  ok(charts && charts.pie[0] === totS && charts.pie[1] === totF, `the pie chart: ${totS} successes, ${totF} failures`);
  ok((await page.locator("#unviewed").innerText()) === "0", "viewing the statistics clears the unviewed-error count");

  // ---- usable at 1366x768 and on a phone ----
  await page.screenshot({ path: env.SHOT, fullPage: true });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);
  ok(wide, "at 1366x768 nothing runs off the page's width");
  await page.setViewportSize({ width: 390, height: 844 });
  await sleep(300);
  const phone = await page.evaluate(() => ({
    fits: document.documentElement.scrollWidth <= window.innerWidth + 1,
    button: (() => { const b = document.querySelector("td.actions button"); const r = b && b.getBoundingClientRect(); return r ? r.right <= window.innerWidth : false; })(),
  }));
  ok(phone.fits && phone.button, "on a phone (390x844) the page fits its width and the buttons are on screen");
  await page.screenshot({ path: env.SHOT.replace(/\.png$/, "-phone.png") });
  ok(errors.length === 0, `no script error on the page${errors.length ? ": " + errors.join("; ") : ""}`);
} finally {
  await browser.close();
}
console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
