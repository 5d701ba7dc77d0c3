// Officer rejects an active emergency change on the policy page in a real
// headless browser (TEST ONLY).
//
//   CHROMIUM=/usr/bin/chromium ADMIN_URL=https://localhost:PORT \
//   OFFICER=staff-bernd PROPOSAL=<id> REASON='…' node tests/browser/reject.mjs
//
// Debian's chromium, driven by playwright-core (pinned in package-lock.json),
// opens ADMIN_URL/policy, logs in at the test OpenID Provider as OFFICER,
// checks that proposal PROPOSAL is shown as an emergency change that is
// already active, types REASON into its reason field, clicks its "Ablehnen"
// (reject) button, and checks that the page reports the rejection, no
// longer lists the proposal, and shows a newer active version. Prints
// `rejected: version N` (the active version afterwards) and exits 0, or
// prints why and exits 1. --ignore-certificate-errors: test certificate.

import { chromium } from 'playwright-core';

const need = (k) => {
  const v = process.env[k];
  if (!v) { console.error(`reject.mjs: ${k} is not set`); process.exit(2); }
  return v;
};
const admin = need('ADMIN_URL');
const officer = need('OFFICER');
const proposal = need('PROPOSAL');
const reason = need('REASON');

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

  // 1. Login at the provider, back on the policy page.
  await page.goto(`${admin}/policy`);
  await page.waitForSelector('input[name="user"]');
  await page.fill('input[name="user"]', officer);
  await page.selectOption('select[name="level"]', 'substantial');
  await Promise.all([
    page.waitForURL(`${admin}/policy`),
    page.click('button[type="submit"]'),
  ]);
  const before = await page.textContent('#active-version');
  const was = Number(/Version (\d+)/.exec(before)?.[1]);

  // 2. The emergency change, flagged as active and awaiting approval.
  const section = page.locator(`section[data-proposal="${proposal}"]`);
  if (await section.count() !== 1) throw new Error(`proposal ${proposal} not on the page`);
  const heading = await section.locator('h3').textContent();
  if (!heading.includes('NOTFALLÄNDERUNG, bereits aktiv')) {
    throw new Error(`not shown as an active emergency change: ${heading}`);
  }
  console.log(`emergency change seen, active version ${was}`);

  // 3. Reject it with a reason (a real click, CSRF token in the form).
  await section.locator('input[name="reason"]').fill(reason);
  await Promise.all([
    page.waitForURL(/\/policy\?done=rejected$/),
    section.locator('button[name="reject"]').click(),
  ]);
  const status = await page.textContent('p.ok');
  if (!status.includes('Abgelehnt.')) throw new Error(`no confirmation: ${status}`);
  if (await page.locator(`section[data-proposal="${proposal}"]`).count() !== 0) {
    throw new Error('rejected proposal still listed as open');
  }
  const after = await page.textContent('#active-version');
  const now = Number(/Version (\d+)/.exec(after)?.[1]);
  if (!(now > was)) throw new Error(`no new active version: ${after}`);
  console.log(`rejected: version ${now}`);
} catch (e) {
  failed = true;
  console.error(`reject.mjs: ${e.stack || e}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
