// Automated accessibility check (WCAG 2.1 A/AA rules of axe-core) of pages
// the gateway itself shows citizens (TEST ONLY).
//
//   CHROMIUM=/usr/bin/chromium node tests/browser/a11y.mjs URL [URL ...]
//
// Each URL is opened in headless Debian chromium (playwright-core) in
// German and in English; axe-core (pinned in package-lock.json) runs the
// rules tagged wcag2a, wcag2aa, wcag21a, wcag21aa. Prints every violation
// and exits 1 if there is any, 0 if there is none. Automated rules cover
// only part of WCAG (contrast, names, language, structure); they do not
// replace a manual BITV test.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const urls = process.argv.slice(2);
if (!process.env.CHROMIUM || urls.length === 0) {
  console.error('usage: CHROMIUM=/usr/bin/chromium node a11y.mjs URL...');
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  headless: true,
  args: ['--ignore-certificate-errors', '--no-sandbox', '--disable-dev-shm-usage'],
});
let violations = 0;
try {
  for (const locale of ['de-DE', 'en-GB']) {
    // The gateway's pages forbid every script (CSP `default-src 'none'`);
    // the injected axe-core is the only script here, so the browser is told
    // to bypass the page's CSP (the policy itself is tested in Rust).
    const context = await browser.newContext({ locale, bypassCSP: true, extraHTTPHeaders: { 'Accept-Language': locale } });
    const page = await context.newPage();
    for (const url of urls) {
      const resp = await page.goto(url, { waitUntil: 'load' });
      await page.addScriptTag({ content: axeSource });
      const result = await page.evaluate(async () =>
        await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
      const lang = await page.evaluate(() => document.documentElement.lang);
      console.log(`${locale} ${resp.status()} ${url} lang=${lang}: ${result.passes.length} rules passed, ${result.violations.length} violated`);
      for (const v of result.violations) {
        violations++;
        console.log(`  VIOLATION ${v.id} (${v.impact}): ${v.help}`);
        for (const n of v.nodes) console.log(`    ${n.target.join(' ')}: ${n.failureSummary}`);
      }
    }
    await context.close();
  }
} finally {
  await browser.close();
}
process.exit(violations === 0 ? 0 : 1);
