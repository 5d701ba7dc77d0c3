// Officer approval page in a real headless browser (TEST ONLY).
//
//   CHROMIUM=/usr/bin/chromium ADMIN_URL=https://localhost:PORT \
//   OFFICER=staff-bernd PROPOSAL=<id> EXPECT_ADDED='p, …' SCREENSHOT=out.png \
//   node tests/browser/approve.mjs
//
// Debian's chromium, driven by playwright-core (pinned in package-lock.json),
// opens ADMIN_URL/policy, is sent to the test OpenID Provider, logs in as
// OFFICER, comes back to the policy page, checks that proposal PROPOSAL is
// shown with the added line EXPECT_ADDED and passing tests, clicks its
// "Freigeben" (approve) button, and checks that the page reports the new
// active version. Prints `approved: version N` and exits 0, or prints why
// and exits 1. The gateway's test certificate is not trusted by chromium,
// hence --ignore-certificate-errors (test only).

import { chromium } from 'playwright-core';

const need = (k) => {
  const v = process.env[k];
  if (!v) { console.error(`approve.mjs: ${k} is not set`); process.exit(2); }
  return v;
};
const admin = need('ADMIN_URL');
const officer = need('OFFICER');
const proposal = need('PROPOSAL');
const expectAdded = need('EXPECT_ADDED');
const screenshot = process.env.SCREENSHOT;

const browser = await chromium.launch({
  executablePath: need('CHROMIUM'),
  headless: true,
  args: ['--ignore-certificate-errors', '--no-sandbox', '--disable-dev-shm-usage'],
});
let failed = false;
try {
  const context = await browser.newContext({ locale: 'de-DE', javaScriptEnabled: true });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);

  // 1. The policy page sends us to the provider's login form.
  await page.goto(`${admin}/policy`);
  await page.waitForSelector('input[name="user"]');
  await page.fill('input[name="user"]', officer);
  await page.selectOption('select[name="level"]', 'substantial');
  await Promise.all([
    page.waitForURL(`${admin}/policy`),
    page.click('button[type="submit"]'),
  ]);

  // 2. Back on the policy page, logged in.
  const heading = await page.textContent('h1');
  if (heading.trim() !== 'Zugriffsrichtlinie') throw new Error(`unexpected page: ${heading}`);
  const body = await page.textContent('main');
  if (!body.includes('Angemeldet als')) throw new Error('not logged in');
  if (!body.includes('Version 1')) throw new Error('active version 1 not shown');

  // 3. The proposal, with its diff and test results.
  const section = page.locator(`section[data-proposal="${proposal}"]`);
  if (await section.count() !== 1) throw new Error(`proposal ${proposal} not on the page`);
  const diff = await section.locator('pre.diff').textContent();
  if (!diff.includes(`+ ${expectAdded}`)) throw new Error(`diff lacks the added line: ${diff}`);
  const tests = await section.locator('p.tests').textContent();
  if (!/\d+ bestanden, 0 fehlgeschlagen/.test(tests)) throw new Error(`tests not passing: ${tests}`);
  console.log(`proposal seen: ${tests.trim()}`);
  if (process.env.SCREENSHOT_BEFORE) {
    await page.screenshot({ path: process.env.SCREENSHOT_BEFORE, fullPage: true });
  }

  // 4. Approve it (a real click on a real form button, CSRF token included).
  await Promise.all([
    page.waitForURL(/\/policy\?done=approved-\d+$/),
    section.locator('button[name="approve"]').click(),
  ]);
  const status = await page.textContent('p.ok');
  const m = /Version (\d+) ist jetzt aktiv/.exec(status);
  if (!m) throw new Error(`no confirmation: ${status}`);
  const active = await page.textContent('#active-version');
  if (!active.includes(`Version ${m[1]}`) || !active.includes('freigegeben von')) {
    throw new Error(`active version not updated: ${active}`);
  }
  if (await page.locator(`section[data-proposal="${proposal}"]`).count() !== 0) {
    throw new Error('approved proposal still listed as open');
  }
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`approved: version ${m[1]}`);
} catch (e) {
  failed = true;
  console.error(`approve.mjs: ${e.stack || e}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
