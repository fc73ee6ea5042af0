// A real OpenID provider for Brevet's browser and end-to-end tests: panva's oidc-provider (a
// certified OpenID Connect implementation) with a small but real login and consent interaction.
//
//   node tests/browser/oidc-provider.mjs [PORT] [--exit-with-stdin]
//
// PORT (or OIDC_PORT; 0 or unset picks a free one) on 127.0.0.1. When ready it prints exactly one
// line to stdout:  oidc provider listening on http://127.0.0.1:PORT  — the issuer. Everything else
// (oidc-provider's warnings, request errors) goes to stderr. With --exit-with-stdin the process
// also ends when its standard input closes, so a test that dies leaves no provider behind.
//
// Clients: OIDC_CLIENTS (a JSON array of client metadata, as in OpenID Dynamic Client
// Registration: client_id, client_secret, redirect_uris, grant_types, response_types,
// token_endpoint_auth_method, application_type, ...) or OIDC_CLIENTS_FILE (a file holding the
// same). Extra property `first_party` (default true): consent is granted without a page. Without
// either variable the DEFAULT_CLIENTS below are used.
//
// Users: the fixed table USERS below, or OIDC_USERS (JSON object: username -> {password, name,
// email, groups}). `sub` is the username.
//
// Pages and their stable selectors (for Playwright):
//   login   /interaction/:uid       form#login: input[name=login], input[name=password],
//                                   button[type=submit]; a wrong password re-renders it with
//                                   p#login-error
//   consent /interaction/:uid       (only for clients with first_party: false) form#consent,
//                                   button#consent-allow, button#consent-deny
//   device  /device                 input[name=user_code], button#device-continue
//           (confirm)               button#device-continue (approve), button#device-abort
//           (done)                  h1#device-success
//   errors                          h1#op-error, pre.op-error-detail
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const USERS = {
  alice: { password: 'alice-pw', name: 'Alice Anders', email: 'alice@example.com', groups: ['engineering'] },
  bob: { password: 'bob-pw', name: 'Bob Brandt', email: 'bob@example.com', groups: ['sre-leads'] },
  carol: { password: 'carol-pw', name: 'Carol Castillo', email: 'carol@example.com', groups: ['security-admins'] },
  dave: { password: 'dave-pw', name: 'Dave Dietrich', email: 'dave@example.com', groups: ['engineering'] },
};

const DEVICE_CODE = 'urn:ietf:params:oauth:grant-type:device_code';

// application_type "native" lets a loopback redirect URI match on any port (RFC 8252, 7.3), so a
// client can be registered before the relying party knows the port it will listen on.
const DEFAULT_CLIENTS = [
  {
    client_id: 'brevet-portal',
    client_secret: 'brevet-portal-secret',
    client_name: 'Brevet',
    application_type: 'native',
    redirect_uris: ['http://127.0.0.1/auth/callback'],
    post_logout_redirect_uris: ['http://127.0.0.1/'],
    grant_types: ['authorization_code', 'refresh_token', DEVICE_CODE],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    client_id: 'brevet-cli',
    client_secret: 'brevet-cli-secret',
    client_name: 'Brevet CLI',
    grant_types: [DEVICE_CODE, 'refresh_token'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  },
];

function loadJson(envVar, fileVar, fallback) {
  if (process.env[envVar]) return JSON.parse(process.env[envVar]);
  if (process.env[fileVar]) return JSON.parse(readFileSync(process.env[fileVar], 'utf8'));
  return fallback;
}

const users = loadJson('OIDC_USERS', 'OIDC_USERS_FILE', USERS);
const clients = loadJson('OIDC_CLIENTS', 'OIDC_CLIENTS_FILE', DEFAULT_CLIENTS);

const args = process.argv.slice(2);
const portArg = args.find((a) => /^\d+$/.test(a)) ?? process.env.OIDC_PORT ?? '0';
if (args.includes('--exit-with-stdin')) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}

// ---- small HTML helpers (no external resources: the test machines have no internet) ----

const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

const STYLE = `body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:40px}
.box{max-width:340px;margin:0 auto;background:#fff;padding:24px 28px;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.2)}
h1{font-size:1.4em;font-weight:500}label{display:block;margin:12px 0 4px}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;height:36px;padding:0 8px;font-size:15px}
button{margin-top:16px;width:100%;height:36px;font-size:15px;background:#2f6fdf;color:#fff;border:0;border-radius:4px;cursor:pointer}
button.secondary{background:none;color:#555}.error{color:#c00}pre{white-space:pre-wrap}.muted{color:#666;font-size:.9em}`;

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>${STYLE}</style></head>
<body><div class="box">${body}</div></body></html>`;
}

function loginPage(uid, client, { login = '', error } = {}) {
  return page('Sign in — Brevet test identity provider', `
<h1>Sign in</h1>
<p class="muted">to continue to <strong id="client-name">${esc(client?.clientName || client?.clientId)}</strong></p>
${error ? `<p class="error" id="login-error">${esc(error)}</p>` : ''}
<form id="login" method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  <label for="login-input">Username</label>
  <input id="login-input" type="text" name="login" value="${esc(login)}" autofocus required>
  <label for="password-input">Password</label>
  <input id="password-input" type="password" name="password" required>
  <button type="submit">Sign in</button>
</form>
<form id="abort" method="post" action="/interaction/${esc(uid)}/abort">
  <button type="submit" class="secondary" id="login-cancel">Cancel</button>
</form>`);
}

function consentPage(uid, client, details) {
  const scopes = details.missingOIDCScope ?? [];
  return page('Authorize — Brevet test identity provider', `
<h1>Authorize ${esc(client?.clientName || client?.clientId)}</h1>
<p>The application asks for: <span id="consent-scopes">${esc(scopes.join(' '))}</span></p>
<form id="consent" method="post" action="/interaction/${esc(uid)}/confirm">
  <button type="submit" id="consent-allow">Allow</button>
</form>
<form method="post" action="/interaction/${esc(uid)}/abort">
  <button type="submit" class="secondary" id="consent-deny">Deny</button>
</form>`);
}

// ---- the provider's own pages, without the default remote web fonts ----

async function userCodeInputSource(ctx, form, out, err) {
  let msg = '<p id="device-prompt">Enter the code displayed on your device</p>';
  if (err && (err.userCode || err.name === 'NoCodeError')) {
    msg = '<p class="error" id="device-error">The code you entered is incorrect. Try again</p>';
  } else if (err && err.name === 'AbortedError') {
    msg = '<p class="error" id="device-error">The sign-in request was interrupted</p>';
  } else if (err) {
    msg = '<p class="error" id="device-error">There was an error processing your request</p>';
  }
  ctx.body = page('Device sign-in', `<h1>Device sign-in</h1>${msg}${form}
<button type="submit" id="device-continue" form="op.deviceInputForm">Continue</button>`);
}

async function userCodeConfirmSource(ctx, form, client, deviceInfo, userCode) {
  ctx.body = page('Confirm device', `<h1>Confirm device</h1>
<p><strong id="device-client">${esc(client.clientName || client.clientId)}</strong></p>
<p>The following code should be displayed on your device:</p>
<p><code id="device-user-code">${esc(userCode)}</code></p>
${form}
<button type="submit" id="device-continue" form="op.deviceConfirmForm">Continue</button>
<button type="submit" id="device-abort" class="secondary" form="op.deviceConfirmForm" name="abort" value="yes">Abort</button>`);
}

async function successSource(ctx) {
  const name = ctx.oidc.client?.clientName || ctx.oidc.client?.clientId;
  ctx.body = page('Sign-in success', `<h1 id="device-success">Sign-in success</h1>
<p>Your sign-in with ${esc(name)} was successful, you can now close this page.</p>`);
}

async function logoutSource(ctx, form) {
  ctx.body = page('Sign out', `<h1>Sign out of the test identity provider?</h1>${form}
<button type="submit" id="logout-yes" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button type="submit" id="logout-no" class="secondary" form="op.logoutForm">No, stay signed in</button>`);
}

async function postLogoutSuccessSource(ctx) {
  ctx.body = page('Signed out', '<h1 id="logout-success">Signed out</h1>');
}

async function renderError(ctx, out) {
  ctx.type = 'html';
  ctx.body = page('Error', `<h1 id="op-error">Something went wrong</h1>
${Object.entries(out).map(([k, v]) => `<pre class="op-error-detail"><strong>${esc(k)}</strong>: ${esc(v)}</pre>`).join('')}`);
}

// ---- accounts ----

async function findAccount(ctx, sub) {
  const user = users[sub];
  if (!user) return undefined;
  return {
    accountId: sub,
    async claims() {
      return {
        sub,
        preferred_username: sub,
        name: user.name ?? sub,
        email: user.email ?? `${sub}@example.com`,
        email_verified: true,
        groups: user.groups ?? [],
      };
    },
  };
}

// ---- the provider ----

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: `rs256-${randomBytes(4).toString('hex')}`, use: 'sig', alg: 'RS256' };
}

function configuration() {
  return {
    clients,
    findAccount,
    jwks: { keys: [signingKey()] },
    cookies: {
      keys: [randomBytes(32).toString('hex')],
      // 127.0.0.1 cookies are shared by every port: names of our own, not `_session`, so they
      // never collide with a relying party's cookies on the same host.
      names: { session: 'op_session', interaction: 'op_interaction', resume: 'op_interaction_resume' },
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    // The ID token carries every claim of the granted scopes, not only those userinfo lacks: the
    // relying party reads email and groups from the ID token.
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    pkce: { required: () => true },
    extraClientMetadata: {
      properties: ['first_party'],
      validator(ctx, key, value, metadata) {
        if (key === 'first_party' && value === undefined) metadata.first_party = true;
      },
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: {
        enabled: true, userCodeInputSource, userCodeConfirmSource, successSource,
      },
      rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
      revocation: { enabled: true },
      userinfo: { enabled: true },
    },
    renderError,
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 120,
      DeviceCode: 600,
      Grant: 86400,
      IdToken: 3600,
      Interaction: 3600,
      RefreshToken: 86400,
      Session: 86400,
    },
  };
}

// ---- interaction routes: login (checked against `users`) and consent ----

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

async function grantConsent(provider, req, res, details) {
  const { grantId, session, params, prompt } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scope] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scope.join(' '));
    }
  }
  const result = { consent: { grantId: await grant.save() } };
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

async function interaction(provider, req, res, url) {
  const [, , uid, action] = url.pathname.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, page('Error', '<h1 id="op-error">Interaction mismatch</h1>'));
  const client = await provider.Client.find(details.params.client_id);
  const { name } = details.prompt;

  if (req.method === 'GET' && !action) {
    if (name === 'login') return send(res, 200, loginPage(uid, client));
    if (name === 'consent') {
      if (client?.first_party !== false) return grantConsent(provider, req, res, details);
      return send(res, 200, consentPage(uid, client, details.prompt.details));
    }
    return send(res, 501, page('Error', `<h1 id="op-error">Prompt ${esc(name)} is not implemented</h1>`));
  }

  if (req.method === 'POST' && action === 'login' && name === 'login') {
    const form = await readForm(req);
    const login = (form.get('login') ?? '').trim();
    const user = Object.hasOwn(users, login) ? users[login] : undefined;
    if (!user || user.password !== form.get('password')) {
      return send(res, 200, loginPage(uid, client, { login, error: 'Invalid username or password.' }));
    }
    return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  }

  if (req.method === 'POST' && action === 'confirm' && name === 'consent') {
    return grantConsent(provider, req, res, details);
  }

  if (req.method === 'POST' && action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
  }

  return send(res, 405, page('Error', '<h1 id="op-error">Method not allowed</h1>'));
}

let handler = (req, res) => { res.writeHead(503); res.end(); };
const server = http.createServer((req, res) => handler(req, res));
server.listen(Number(portArg), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration());
  provider.on('server_error', (ctx, err) => console.error('oidc server_error:', err));
  const callback = provider.callback();
  handler = (req, res) => {
    const url = new URL(req.url, issuer);
    if (!url.pathname.startsWith('/interaction/')) return callback(req, res);
    return interaction(provider, req, res, url).catch((err) => {
      console.error('interaction error:', err);
      if (!res.headersSent) {
        send(res, err.statusCode ?? 500, page('Error', `<h1 id="op-error">Something went wrong</h1>
<pre class="op-error-detail">${esc(err.name)}: ${esc(err.error_description ?? err.message)}</pre>`));
      }
    });
  };
  process.stdout.write(`oidc provider listening on ${issuer}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
