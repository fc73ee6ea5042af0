// Proves the browser harness with no Brevet involved: Debian's Chromium signs in at the real OIDC
// provider (authorization code + PKCE, S256), the code is exchanged at the token endpoint, and the
// ID token (signature checked against the provider's JWKS) carries email and groups; then a
// device-flow sign-in is approved in the browser and polled to its tokens.
//
//   OIDC_ISSUER=http://127.0.0.1:PORT OIDC_CLIENT_ID=... OIDC_CLIENT_SECRET=... node selfcheck.mjs
//
// The client must allow authorization_code and the device_code grant, with a redirect URI
// http://127.0.0.1/auth/callback for any loopback port (application_type "native"), or exactly
// OIDC_REDIRECT_URI when that is set. Run by crates/brevet-testkit/tests/oidc_provider.rs.
import assert from 'node:assert/strict';
import {
  createHash, createPublicKey, randomBytes, verify,
} from 'node:crypto';
import http from 'node:http';

import {
  approveDevice, jwtPayload, launchBrowser, oidcLogin, screenshot,
} from './lib.mjs';

const issuer = process.env.OIDC_ISSUER;
const clientId = process.env.OIDC_CLIENT_ID;
const clientSecret = process.env.OIDC_CLIENT_SECRET;
assert.ok(issuer && clientId && clientSecret, 'set OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET');
const basic = `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`;
const SCOPE = 'openid email profile groups';

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const log = (msg) => console.log(`selfcheck: ${msg}`);

async function getJson(url) {
  const res = await fetch(url);
  assert.equal(res.status, 200, `GET ${url}`);
  return res.json();
}

async function tokenRequest(endpoint, params) {
  const res = await fetch(endpoint, {
    method: 'POST',
    headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(params),
  });
  return { status: res.status, body: await res.json() };
}

/// Checks the ID token's RS256 signature against the provider's JWKS and returns its payload.
function verifiedIdToken(idToken, jwks) {
  const [h, p, s] = idToken.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
  assert.equal(header.alg, 'RS256');
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  assert.ok(jwk, `no key ${header.kid} in the JWKS`);
  const ok = verify('sha256', Buffer.from(`${h}.${p}`), createPublicKey({ key: jwk, format: 'jwk' }), Buffer.from(s, 'base64url'));
  assert.ok(ok, 'ID token signature does not verify');
  return jwtPayload(idToken);
}

// A throwaway relying party: it only has to answer the redirect.
const target = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end('<!DOCTYPE html><title>callback</title><h1 id="callback">callback reached</h1>');
});
const wanted = process.env.OIDC_REDIRECT_URI ? new URL(process.env.OIDC_REDIRECT_URI) : undefined;
await new Promise((ok) => target.listen(Number(wanted?.port ?? 0), '127.0.0.1', ok));
const redirectUri = wanted?.href ?? `http://127.0.0.1:${target.address().port}/auth/callback`;

const browser = await launchBrowser();
try {
  const meta = await getJson(`${issuer}/.well-known/openid-configuration`);
  assert.equal(meta.issuer, issuer);
  assert.ok(meta.code_challenge_methods_supported.includes('S256'));
  const jwks = await getJson(meta.jwks_uri);

  const authUrl = ({ pkce = true, challenge, state, nonce }) => {
    const u = new URL(meta.authorization_endpoint);
    u.search = new URLSearchParams({
      client_id: clientId, response_type: 'code', scope: SCOPE, redirect_uri: redirectUri, state, nonce,
      ...(pkce ? { code_challenge: challenge, code_challenge_method: 'S256' } : {}),
    });
    return u.href;
  };
  const atCallback = (url) => url.href.startsWith(redirectUri);

  // 1. PKCE is required: a request without a code challenge comes back as an error.
  const page = await (await browser.newContext()).newPage();
  await page.goto(authUrl({ pkce: false, state: 's0', nonce: 'n0' }));
  await page.waitForURL(atCallback);
  const refused = new URL(page.url()).searchParams;
  assert.equal(refused.get('error'), 'invalid_request', page.url());
  assert.match(refused.get('error_description'), /PKCE/);
  log('authorization without PKCE refused');

  // 2. Authorization code + PKCE as alice, after one wrong password.
  const verifier = b64url(randomBytes(32));
  const challenge = b64url(createHash('sha256').update(verifier).digest());
  const state = b64url(randomBytes(12));
  const nonce = b64url(randomBytes(12));
  await page.goto(authUrl({ challenge, state, nonce }));
  await page.locator('form#login').waitFor();
  log(`login page screenshot: ${await screenshot(page, 'selfcheck-login')}`);
  await assert.rejects(oidcLogin(page, 'alice', 'not-her-password'), /refused alice: Invalid username or password/);
  await screenshot(page, 'selfcheck-login-error');
  await oidcLogin(page, 'alice', 'alice-pw');
  await page.waitForURL(atCallback);
  const back = new URL(page.url()).searchParams;
  assert.equal(back.get('state'), state);
  assert.equal(back.get('iss'), issuer);
  const code = back.get('code');
  assert.ok(code, `no code in ${page.url()}`);

  const tokens = await tokenRequest(meta.token_endpoint, {
    grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier,
  });
  assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
  const id = verifiedIdToken(tokens.body.id_token, jwks);
  assert.equal(id.iss, issuer);
  assert.equal(id.aud, clientId);
  assert.equal(id.nonce, nonce);
  assert.equal(id.sub, 'alice');
  assert.equal(id.preferred_username, 'alice');
  assert.equal(id.email, 'alice@example.com');
  assert.deepEqual(id.groups, ['engineering']);
  log(`alice signed in with PKCE; ID token claims ${JSON.stringify({ sub: id.sub, email: id.email, groups: id.groups })}`);

  // 3. The provider's session signs alice in again without a form; a wrong verifier is refused.
  await page.goto(authUrl({ challenge, state: 's2', nonce: 'n2' }));
  await page.waitForURL(atCallback);
  const code2 = new URL(page.url()).searchParams.get('code');
  const wrong = await tokenRequest(meta.token_endpoint, {
    grant_type: 'authorization_code', code: code2, redirect_uri: redirectUri, code_verifier: b64url(randomBytes(32)),
  });
  assert.equal(wrong.status, 400);
  assert.equal(wrong.body.error, 'invalid_grant');
  log('wrong code_verifier refused');

  // 4. Device flow: the client asks for a code, bob approves it in his own browser context.
  const dev = await tokenRequest(meta.device_authorization_endpoint, { scope: SCOPE });
  assert.equal(dev.status, 200, JSON.stringify(dev.body));
  const bobPage = await (await browser.newContext()).newPage();
  await approveDevice(bobPage, dev.body.verification_uri_complete, {
    user: 'bob', password: 'bob-pw', shots: 'selfcheck-device',
  });
  await screenshot(bobPage, 'selfcheck-device-success');
  let devTokens;
  for (let i = 0; i < 40; i += 1) {
    devTokens = await tokenRequest(meta.token_endpoint, {
      grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: dev.body.device_code,
    });
    if (devTokens.status === 200 || !['authorization_pending', 'slow_down'].includes(devTokens.body.error)) break;
    await new Promise((ok) => setTimeout(ok, 250));
  }
  assert.equal(devTokens.status, 200, JSON.stringify(devTokens.body));
  const bob = verifiedIdToken(devTokens.body.id_token, jwks);
  assert.equal(bob.sub, 'bob');
  assert.equal(bob.email, 'bob@example.com');
  assert.deepEqual(bob.groups, ['sre-leads']);
  log(`device flow approved by bob; ID token groups ${JSON.stringify(bob.groups)}`);

  // 5. The same, typing the code on the plain verification page (as a person reading the CLI).
  const dev2 = await tokenRequest(meta.device_authorization_endpoint, { scope: SCOPE });
  const davePage = await (await browser.newContext()).newPage();
  await approveDevice(davePage, dev2.body.verification_uri, {
    userCode: dev2.body.user_code, user: 'dave', password: 'dave-pw', shots: 'selfcheck-device-typed',
  });
  const dave = await tokenRequest(meta.token_endpoint, {
    grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: dev2.body.device_code,
  });
  assert.equal(dave.status, 200, JSON.stringify(dave.body));
  assert.deepEqual(verifiedIdToken(dave.body.id_token, jwks).groups, ['engineering']);
  log('device code typed on the verification page by dave');
  log('ok');
} finally {
  await browser.close();
  target.close();
}
