// The portal end to end in headless Chromium, driven by crates/brevet-cli/tests/e2e/portal.rs:
// alice signs in through the real OIDC provider and asks for database access; bob (an approver
// by his `sre-leads` group) signs in and approves; alice activates and sees the one-time
// connection string and a live countdown; carol (admin) engages the kill switch; the grant is
// gone and alice is signed out. A screenshot of every page is saved as a test artifact.
// Prints one JSON line with what the Rust test checks afterwards.
import assert from 'node:assert/strict';

import { launchBrowser, oidcLogin, screenshot } from './lib.mjs';

const base = process.env.BREVET_URL;
assert.ok(base, 'BREVET_URL must be set');

const browser = await launchBrowser();
const result = {};
try {
  async function signIn(user, password, shot) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/`);
    await page.waitForURL(`${base}/login`);
    if (shot) await screenshot(page, shot);
    await page.locator('#sso').click();
    await oidcLogin(page, user, password);
    await page.waitForURL(`${base}/access`);
    assert.equal((await page.locator('.who').textContent()).trim(), `${user}@example.com`);
    return page;
  }

  // alice asks for read access to the orders database.
  const alice = await signIn('alice', 'alice-pw', '01-sign-in');
  await screenshot(alice, '02-my-access-empty');
  assert.ok(await alice.locator('#no-access').count(), 'alice holds nothing yet');
  await alice.goto(`${base}/request`);
  const eligible = await alice.locator('#eligible').innerText();
  assert.match(eligible, /postgres:orders/);
  assert.match(eligible, /db\.read/);
  // The form explains the limits before submitting: the longest duration and approvals.
  assert.match(eligible, /1h/);
  await screenshot(alice, '03-request-form');
  await alice.selectOption('#choice', 'postgres:orders|db.read');
  await alice.fill('#duration', '30m');
  await alice.fill('#reason', 'INC-4711: customer order stuck');
  await alice.click('#submit-request');
  await alice.waitForURL(/\/requests\/[^/]+$/);
  const requestId = alice.url().split('/').pop();
  result.request_id = requestId;
  assert.match(await alice.locator('#request').innerText(), /pending/);
  await screenshot(alice, '04-request-pending');

  // bob approves from his inbox.
  const bob = await signIn('bob', 'bob-pw');
  await bob.goto(`${base}/approvals`);
  const card = bob.locator(`[data-request="${requestId}"]`);
  assert.match(await card.innerText(), /alice@example\.com asks for db\.read on postgres:orders/);
  assert.match(await card.innerText(), /INC-4711/);
  await screenshot(bob, '05-approvals-inbox');
  await card.locator('button.approve').click();
  await bob.waitForURL(`${base}/approvals`);
  assert.ok(await bob.locator('#inbox-empty').count(), 'the inbox is empty after approving');
  await screenshot(bob, '06-approved');

  // alice activates and sees the connection string once, with a live countdown.
  await alice.goto(`${base}/requests/${requestId}`);
  assert.match(await alice.locator('#request').innerText(), /approved/);
  await screenshot(alice, '07-approved-ready');
  await alice.click('#activate');
  const secret = (await alice.locator('#credential').textContent()).trim();
  assert.match(secret, /^postgres(ql)?:\/\//, 'a connection string');
  result.credential = secret;
  await screenshot(alice, '08-one-time-credential');
  await alice.goto(`${base}/access`);
  const row = alice.locator(`tr[data-grant="${requestId}"]`);
  assert.match(await row.innerText(), /active/);
  const before = (await row.locator('.countdown').textContent()).trim();
  assert.match(before, /^\d+m \d\ds left$/, `countdown text: ${before}`);
  await alice.waitForTimeout(2200);
  const after = (await row.locator('.countdown').textContent()).trim();
  assert.notEqual(after, before, 'the countdown ticks');
  result.countdown = [before, after];
  assert.equal(await alice.locator('#credential').count(), 0, 'the credential is not shown again');
  await screenshot(alice, '09-my-access-active');

  // carol (admin) cuts alice off everywhere.
  const carol = await signIn('carol', 'carol-pw');
  await carol.goto(`${base}/admin/kill`);
  await screenshot(carol, '10-kill-switch');
  await carol.fill('#principal', 'alice@example.com');
  await carol.fill('#reason', 'laptop stolen');
  await carol.click('#kill');
  const report = await carol.locator('#kill-report').innerText();
  assert.match(report, /1 grant\(s\) revoked/);
  assert.match(report, /session\(s\) ended/);
  assert.match(await carol.locator('#locks').innerText(), /alice@example\.com/);
  await screenshot(carol, '11-kill-report');
  await carol.goto(`${base}/admin/audit?person=alice%40example.com`);
  assert.match(await carol.locator('#chain').innerText(), /Chain verified/);
  assert.match(await carol.locator('#events').innerText(), /grant_revoked/);
  await screenshot(carol, '12-audit');

  // alice's session ended with the kill switch: back to sign-in, and she cannot sign in again.
  await alice.goto(`${base}/access`);
  await alice.waitForURL(`${base}/login`);
  await alice.locator('#sso').click();
  await alice.waitForLoadState('domcontentloaded');
  if (await alice.locator('form#login').count()) await oidcLogin(alice, 'alice', 'alice-pw');
  assert.match(await alice.locator('body').innerText(), /locked by the kill switch/);
  await screenshot(alice, '13-locked-out');

  // Everyone: carol — an admin by her SSO group, not by the config — locks everyone. bob is
  // signed out; carol keeps her session, can still sign in afresh, and lifts the lock.
  await carol.goto(`${base}/admin/kill`);
  await carol.fill('#principal', '*');
  await carol.fill('#reason', 'incident drill');
  await carol.click('#kill');
  assert.match(await carol.locator('#kill-report').innerText(), /session\(s\) ended/);
  await bob.goto(`${base}/approvals`);
  await bob.waitForURL(`${base}/login`);
  const carolAgain = await signIn('carol', 'carol-pw');
  await carolAgain.goto(`${base}/admin/kill`);
  await carolAgain.locator('#locks tr:has(input[name="principal"][value="*"]) button').click();
  await carolAgain.waitForURL(/\/admin\/kill/);
  const locks = (await carolAgain.locator('#locks').count())
    ? await carolAgain.locator('#locks').innerText()
    : '';
  assert.doesNotMatch(locks, /incident drill/, 'the everyone-lock is lifted');
  assert.match(locks, /alice@example\.com/, "alice's own lock stays");
  result.everyone_lock_lifted = true;
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
