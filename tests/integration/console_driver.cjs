// console_driver.cjs - drives the web console (engine/runtime/console) in
// Debian's headless Chromium through playwright-core (never a downloaded
// browser).  Called by test_console.py with a running engine.
//
// usage: node console_driver.cjs URL TOKEN CONTROL_ID DEAD_DEST SHOTS_DIR PROFILE_DIR ADMIN_TOKEN
// Logs in, sees the channel, searches by patient id, opens the message CONTROL_ID
// (journey, body as a tree), resends it to DEAD_DEST after the confirmation,
// lists the dead letters of DEAD_DEST and requeues the first.
// Exits 1 when an element is missing, an API call fails or the page logs a
// JavaScript error; prints "console-ok" at the end.
'use strict';
const { chromium } = require('playwright-core');
const path = require('path');

const [url, token, ctl, deadDest, shots, profile, adminToken] = process.argv.slice(2);
const TIMEOUT = 10000;

async function main() {
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30000,
  });
  const errors = [];
  const page = ctx.pages()[0] || await ctx.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('pageerror', (e) => errors.push('pageerror: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push('console: ' + m.text()); });
  try {
    await page.goto(url + '/');
    await page.waitForSelector('#login:not([hidden])');
    await page.fill('#token', token);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#channels-table tr[data-channel="lab"] svg.spark polyline');
    const cookies = await ctx.cookies();
    if (cookies.length) throw new Error('the console set a cookie: ' + JSON.stringify(cookies));
    await page.screenshot({ path: path.join(shots, '1-channels.png') });

    await page.click('#nav-messages');
    await page.waitForSelector('#page-messages:not([hidden])');
    // by patient id (PID-3 of the test messages), then the row of our message
    await page.fill('#q-patient', '12345');
    await page.click('#search-button');
    const link = page.locator('#results-table tbody tr', { hasText: ctl }).locator('a').first();
    await link.waitFor();
    await page.screenshot({ path: path.join(shots, '2-search.png') });
    await link.click();
    await page.waitForSelector('#page-message:not([hidden])');
    await page.waitForSelector('#journey-table tbody tr');
    const fields = await page.textContent('#msg-fields');
    if (!fields.includes(ctl)) throw new Error('the message view lacks its control id');
    await page.click('#show-body');
    await page.waitForSelector('#tree-table:not([hidden]) tbody tr');
    const tree = await page.textContent('#tree-table');
    if (!tree.includes('MSH-10') || !tree.includes(ctl)) throw new Error('no tree with MSH-10');
    await page.screenshot({ path: path.join(shots, '3-message.png'), fullPage: true });
    // resend it to the same destination, confirming the dialog
    page.once('dialog', (d) => d.accept());
    await page.fill('#resend-dest', deadDest);
    await page.click('#resend-form button[type=submit]');
    await page.locator('#status', { hasText: 'resent to ' + deadDest }).waitFor();

    await page.click('#nav-destinations');
    const row = page.locator('#dests-table tr[data-destination="' + deadDest + '"]');
    await row.waitFor();
    await row.locator('button', { hasText: 'Dead letters' }).click();
    const dead = page.locator('#dead-table tbody tr').first();
    await dead.waitFor();
    await page.screenshot({ path: path.join(shots, '4-deadletters.png') });
    await dead.locator('button', { hasText: 'Requeue' }).click();
    // (a locator, not waitForFunction: the console's CSP forbids eval)
    await page.locator('#status', { hasText: 'requeued 1' }).waitFor();
    await page.screenshot({ path: path.join(shots, '5-requeued.png') });
    // the audit trail needs the admin role: the operator sees the refusal,
    // then logs out and in again as an admin
    await page.click('#nav-audit');
    await page.locator('#status', { hasText: 'role' }).waitFor();
    // the browser logs that refusal as a failed resource: expected, once
    const i403 = errors.findIndex((e) => e.includes('status of 403'));
    if (i403 < 0) throw new Error('the refusal was not seen');
    errors.splice(i403, 1);
    await page.click('#logout');
    await page.waitForSelector('#login:not([hidden])');
    await page.fill('#token', adminToken);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#page-audit:not([hidden])'); /* back where it was */
    await page.locator('#audit-table tbody tr', { hasText: 'deadletter.requeue' }).first().waitFor();
    await page.locator('#audit-table tbody tr', { hasText: 'message.resend' }).first().waitFor();
    await page.screenshot({ path: path.join(shots, '6-audit.png') });
    const stored = await page.evaluate(() => sessionStorage.getItem('caduceus.token'));
    if (stored !== adminToken) throw new Error('the token is not in sessionStorage');
  } finally {
    await ctx.close();
  }
  if (errors.length) throw new Error('JavaScript errors:\n' + errors.join('\n'));
  console.log('console-ok');
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
