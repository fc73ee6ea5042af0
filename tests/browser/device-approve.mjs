// Approves a device-flow sign-in (`brevet login`) in headless Chromium as a person would: opens
// the verification URL the CLI printed, signs in to the OIDC provider and confirms.
// Env: VERIFICATION_URI, USER_CODE, OIDC_USER, OIDC_PASSWORD.
import assert from 'node:assert/strict';

import { approveDevice, launchBrowser, screenshot } from './lib.mjs';

const uri = process.env.VERIFICATION_URI;
assert.ok(uri, 'VERIFICATION_URI must be set');
const browser = await launchBrowser();
try {
  const page = await (await browser.newContext()).newPage();
  await approveDevice(page, uri, {
    userCode: process.env.USER_CODE,
    user: process.env.OIDC_USER,
    password: process.env.OIDC_PASSWORD,
    shots: 'cli-login',
  });
  await screenshot(page, 'cli-login-done');
} finally {
  await browser.close();
}
