// Shared helpers for Brevet's browser tests: Debian's Chromium driven by playwright-core, and the
// pages of tests/browser/oidc-provider.mjs. Playwright never downloads a browser here.
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/// Flags that keep Chromium off the network and quiet on a machine without internet.
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/// Headless Debian Chromium (BREVET_CHROMIUM, else /usr/bin/chromium). Playwright gives every
/// launch a fresh temporary user-data-dir and removes it on close(); contexts from
/// browser.newContext() have separate cookie jars (one per signed-in user).
export async function launchBrowser({ args = [], ...options } = {}) {
  return chromium.launch({
    executablePath: process.env.BREVET_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    chromiumSandbox: false,
    timeout: 60_000,
    ...options,
    args: [...CHROMIUM_ARGS, ...args],
  });
}

/// Where screenshots go: BREVET_ARTIFACTS, else target/browser-artifacts in the repository.
export function artifactsDir() {
  const dir = process.env.BREVET_ARTIFACTS || join(repoRoot, 'target', 'browser-artifacts');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/// Saves a full-page PNG of `page` as <artifacts>/<name>.png and returns its path.
export async function screenshot(page, name) {
  const path = join(artifactsDir(), name.endsWith('.png') ? name : `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/// On the provider's login page (the browser was sent there by the relying party): signs in as
/// `user` and allows the consent page if one is shown. Resolves once the browser has left the
/// provider's interaction pages (normally: back at the relying party's redirect URI). Throws
/// with the page's message when the provider refuses the password.
export async function oidcLogin(page, user, password) {
  const form = page.locator('form#login');
  await form.waitFor({ timeout: 30_000 });
  await form.locator('input[name=login]').fill(user);
  await form.locator('input[name=password]').fill(password);
  await form.locator('button[type=submit]').click();
  await page.waitForLoadState('domcontentloaded');
  const error = page.locator('#login-error');
  if (await error.count()) {
    throw new Error(`the OIDC provider refused ${user}: ${(await error.textContent()).trim()}`);
  }
  if (await page.locator('form#consent').count()) {
    await page.locator('#consent-allow').click();
    await page.waitForLoadState('domcontentloaded');
  }
}

/// Approves a device-flow sign-in as a person would: opens `verificationUri` (the
/// verification_uri_complete, or the plain verification_uri with `userCode`), enters the code if
/// the page asks for it, signs in if asked, and confirms. Resolves on the success page.
export async function approveDevice(page, verificationUri, { userCode, user, password, shots } = {}) {
  await page.goto(verificationUri);
  for (let step = 0; step < 6; step += 1) {
    await page.waitForLoadState('domcontentloaded');
    if (await page.locator('#device-success').count()) return;
    if (await page.locator('#device-error').count()) {
      throw new Error(`device page error: ${(await page.locator('#device-error').textContent()).trim()}`);
    }
    if (await page.locator('#op-error').count()) {
      throw new Error(`provider error page: ${await page.locator('body').innerText()}`);
    }
    if (await page.locator('form#login').count()) {
      if (shots) await screenshot(page, `${shots}-login`);
      await oidcLogin(page, user, password);
      continue;
    }
    const code = page.locator('input[name=user_code][type=text]');
    if (await code.count()) {
      if (userCode && !(await code.inputValue())) await code.fill(userCode);
      if (shots) await screenshot(page, `${shots}-code`);
    } else if (shots) {
      await screenshot(page, `${shots}-confirm`);
    }
    await page.locator('#device-continue').click();
  }
  throw new Error(`device approval did not finish; last page ${page.url()}`);
}

/// The payload of a JWT, unverified (the tests check claims, the relying party checks signatures).
export function jwtPayload(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
}
