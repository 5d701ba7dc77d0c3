// Test-only OpenID Provider for stadttor's OIDC integration tests.
//
// TEST ONLY. NEVER DEPLOY. It trusts whoever types a user name, relaxes the
// SSRF guard for loopback and keeps everything in memory.
//
//   node tests/oidc-op/op.mjs CONFIG.json
//
// CONFIG.json:
//   { "port": 0,                          // 0 = any free port
//     "keys_file": "/tmp/x/op-keys.json", // private JWKs, created if missing
//     "clients": [ ...oidc-provider client metadata... ] }
//
// Prints exactly one line `OP ready http://127.0.0.1:PORT` on stdout when it
// serves; everything else goes to stderr.
//
// Built on panva's oidc-provider (pinned in package.json). What is ours:
// - keys: ES256 `es256-1` and RSA-3072 PS256 `ps256-1`, generated once and
//   saved to keys_file so Rust tests can forge tokens with the OP's own keys;
// - `POST /__test/rotate`: adds ES256 `es256-N`, signs with it from then on,
//   keeps publishing the old keys, rewrites keys_file. oidc-provider fixes its
//   keys at construction, so this builds a new Provider with the same issuer,
//   cookie keys and in-memory store, so sessions, grants and codes survive a
//   rotation (a restart of the process loses them);
// - `GET /interaction/:uid`: a plain HTML login form (user + eIDAS level),
//   `POST /interaction/:uid/login` logs in with acr = min(level, user's max)
//   and grants the requested scopes and claims in the same step (a consent
//   prompt that still comes up is granted without a page);
// - an RP-initiated-logout confirm page whose form carries `logout=yes` as a
//   hidden input, so a plain HTTP client can submit it.

import { randomBytes, generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync, renameSync } from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';
// oidc-provider's own in-memory adapter (a deep import: the package has no
// "exports" map and the version is pinned). Its default gives each Provider
// a store of its own; one shared store lets sessions, grants and codes
// survive the Provider rebuilt by a key rotation.
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

// stdout carries exactly one line, the ready line; oidc-provider's notices
// (console.info) and anything else go to stderr.
console.log = console.error;
console.info = console.error;

const LOA = {
  low: 'http://eidas.europa.eu/LoA/low',
  substantial: 'http://eidas.europa.eu/LoA/substantial',
  high: 'http://eidas.europa.eu/LoA/high',
};
const LEVELS = ['low', 'substantial', 'high'];

// Specimen identities (the German ID card specimen "Erika Mustermann"); the
// `sub`s are pseudonyms, as an eID service issues them per service provider.
const USERS = {
  'citizen-high': {
    sub: 'pseud-7f3a9c21e4b8d05a',
    max: 'high',
    claims: {
      given_name: 'Erika',
      family_name: 'Mustermann',
      name: 'Erika Mustermann',
      birthdate: '1964-08-12',
      birth_name: 'Gabler',
      place_of_birth: 'Berlin',
      nationality: 'D',
      document_type: 'ID',
      address: {
        street_address: 'Heidestraße 17',
        locality: 'Köln',
        postal_code: '51147',
        country: 'DE',
      },
    },
  },
  'citizen-substantial': {
    sub: 'pseud-2b6e0d94a1c7f358',
    max: 'substantial',
    claims: {
      given_name: 'Ludwig',
      family_name: 'Mustermann',
      name: 'Ludwig Mustermann',
      birthdate: '1971-03-02',
      place_of_birth: 'Hamburg',
      nationality: 'D',
      address: {
        street_address: 'Musterweg 3',
        locality: 'Bonn',
        postal_code: '53111',
        country: 'DE',
      },
    },
  },
  'citizen-low': {
    sub: 'pseud-c94f1a0e7d3b62b8',
    max: 'low',
    claims: {
      given_name: 'Max',
      family_name: 'Mustermann',
      name: 'Max Mustermann',
    },
  },
  'staff-anna': {
    sub: 'staff-5d81e2c0a7f49b36',
    max: 'substantial',
    claims: {
      given_name: 'Anna',
      family_name: 'Beispiel',
      name: 'Anna Beispiel',
      email: 'anna@kommune.example',
      email_verified: true,
    },
  },
  'staff-bernd': {
    sub: 'staff-9a03c7e5b21d48f6',
    max: 'substantial',
    claims: {
      given_name: 'Bernd',
      family_name: 'Beispiel',
      name: 'Bernd Beispiel',
      email: 'bernd@kommune.example',
      email_verified: true,
    },
  },
  // Someone who registered with an officer's address but never proved it
  // (email_verified false): must never count as anna.
  'staff-unverified': {
    sub: 'staff-e07b4c19d2a6f835',
    max: 'substantial',
    claims: {
      name: 'Unbestätigt',
      email: 'anna@kommune.example',
      email_verified: false,
    },
  },
};
const BY_SUB = new Map(Object.entries(USERS).map(([, u]) => [u.sub, u]));

function die(msg) {
  process.stderr.write(`op.mjs: ${msg}\n`);
  process.exit(2);
}

const configPath = process.argv[2];
if (!configPath) die('usage: node op.mjs CONFIG.json');
const config = JSON.parse(readFileSync(configPath, 'utf8'));
if (!config.keys_file) die('config: keys_file is required');

// --- keys -------------------------------------------------------------------

function newKey(kind, kid) {
  const { privateKey } = kind === 'ec'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 3072 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid, alg: kind === 'ec' ? 'ES256' : 'PS256', use: 'sig' };
}

function saveKeys(keys) {
  const tmp = `${config.keys_file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ keys }, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, config.keys_file);
}

// Signing order: oidc-provider signs with the first key that fits the
// algorithm, so the newest ES256 key stands first.
let keys;
if (existsSync(config.keys_file)) {
  ({ keys } = JSON.parse(readFileSync(config.keys_file, 'utf8')));
} else {
  keys = [newKey('ec', 'es256-1'), newKey('rsa', 'ps256-1')];
  saveKeys(keys);
}

function rotate() {
  const used = new Set(keys.map((k) => k.kid));
  let n = 2;
  while (used.has(`es256-${n}`)) n += 1;
  const key = newKey('ec', `es256-${n}`);
  keys = [key, ...keys];
  saveKeys(keys);
  return key.kid;
}

// --- provider -----------------------------------------------------------------

// Cookie signing keys live as long as the process, so a rotation (a new
// Provider) still reads the sessions it set.
const cookieKeys = [randomBytes(32).toString('base64url')];
const adapter = createMemoryAdapter();

function htmlEscape(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  }[c]));
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="de">
<head><meta charset="utf-8"><title>${htmlEscape(title)}</title></head>
<body>
<h1>${htmlEscape(title)}</h1>
${body}
</body>
</html>
`;
}

function buildProvider(issuer) {
  const provider = new Provider(issuer, {
    clients: config.clients ?? [],
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      id_token_signed_response_alg: 'ES256',
    },
    jwks: { keys },
    adapter,
    cookies: { keys: cookieKeys },
    responseTypes: ['code'],
    pkce: { required: () => true },
    acrValues: Object.values(LOA),
    ttl: {
      // Short, fixed lifetimes for tests (seconds).
      AccessToken: 600,
      AuthorizationCode: 60,
      IdToken: 600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
    claims: {
      acr: null,
      amr: null,
      sid: null,
      openid: ['sub'],
      profile: ['name', 'given_name', 'family_name', 'birthdate'],
      address: ['address'],
      email: ['email', 'email_verified'],
      eid: ['place_of_birth', 'birth_name', 'nationality', 'document_type'],
    },
    scopes: ['openid', 'profile', 'address', 'eid', 'email'],
    features: {
      devInteractions: { enabled: false },
      claimsParameter: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => {
          // oidc-provider's own page puts the `logout` button outside the
          // form; a plain HTTP client needs it inside, as a hidden input.
          const withLogout = form.replace('</form>', '<input type="hidden" name="logout" value="yes"/>\n<button type="submit">Abmelden</button>\n</form>');
          ctx.type = 'html';
          ctx.body = page('Abmelden?', withLogout);
        },
        postLogoutSuccessSource: async (ctx) => {
          ctx.type = 'html';
          ctx.body = page('Abgemeldet', '<p>Sie sind abgemeldet.</p>');
        },
      },
    },
    interactions: {
      url: (ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    findAccount: async (ctx, sub) => {
      const user = BY_SUB.get(sub);
      if (!user) return undefined;
      return {
        accountId: sub,
        claims: async () => ({ sub, ...user.claims }),
      };
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = page('Fehler', `<pre>${htmlEscape(JSON.stringify(out, null, 2))}</pre>`);
    },
    // TEST ONLY: oidc-provider refuses outgoing requests to loopback and
    // private addresses (an SSRF guard in its fetch helper, which passes a
    // guarding undici dispatcher). The test RPs listen on 127.0.0.1, so drop
    // that dispatcher; back-channel logout would silently fail otherwise.
    fetch: (url, options) => {
      delete options.dispatcher;
      return fetch(url, options);
    },
  });
  provider.on('server_error', (ctx, err) => process.stderr.write(`op.mjs: server_error: ${err.stack}\n`));
  provider.on('backchannel.error', (ctx, err, client) => process.stderr.write(`op.mjs: back-channel logout to ${client.clientId} failed: ${err.message}\n`));
  provider.on('backchannel.success', (ctx, client) => process.stderr.write(`op.mjs: back-channel logout sent to ${client.clientId}\n`));
  return provider;
}

// --- interactions -------------------------------------------------------------

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > 65536) reject(new Error('form too large'));
    });
    req.on('end', () => resolve(Object.fromEntries(new URLSearchParams(body))));
    req.on('error', reject);
  });
}

function send(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

// Grants everything the request asked for: its scopes and the claims named
// in its `claims` parameter.
async function grantAll(provider, details, accountId) {
  const { params } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  if (params.scope) grant.addOIDCScope(params.scope);
  if (params.claims) {
    const claims = JSON.parse(params.claims);
    const names = new Set([
      ...Object.keys(claims.id_token ?? {}),
      ...Object.keys(claims.userinfo ?? {}),
    ]);
    if (names.size) grant.addOIDCClaims([...names]);
  }
  const missing = details.prompt?.details ?? {};
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return grant.save();
}

function loginForm(uid, details, error) {
  const hint = details.params.login_hint ?? '';
  const options = LEVELS.map((l) => `<option value="${l}"${l === 'substantial' ? ' selected' : ''}>${l}</option>`).join('');
  return page('Anmeldung (Test-OP)', `${error ? `<p class="error">${htmlEscape(error)}</p>\n` : ''}<p>Client: ${htmlEscape(details.params.client_id)}</p>
<form method="post" action="/interaction/${htmlEscape(uid)}/login">
<label>Benutzer <input type="text" name="user" value="${htmlEscape(hint)}"></label>
<label>Vertrauensniveau <select name="level">${options}</select></label>
<button type="submit">Anmelden</button>
</form>`);
}

async function interaction(provider, req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    send(res, 400, page('Fehler', '<p>interaction does not match this browser session</p>'));
    return;
  }
  if (action === undefined && req.method === 'GET') {
    if (details.prompt.name === 'consent') {
      // Consent is implied for the test users: grant without a page.
      const grantId = await grantAll(provider, details, details.session.accountId);
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      return;
    }
    send(res, 200, loginForm(uid, details));
    return;
  }
  if (action === 'login' && req.method === 'POST') {
    const form = await readForm(req);
    const user = USERS[form.user];
    if (!user) {
      send(res, 400, page('Unbekannter Benutzer', `<p>unknown user ${htmlEscape(form.user ?? '')}</p>`));
      return;
    }
    let level = user.max;
    if (form.level) {
      if (!LEVELS.includes(form.level)) {
        send(res, 400, page('Fehler', `<p>unknown level ${htmlEscape(form.level)}</p>`));
        return;
      }
      level = LEVELS[Math.min(LEVELS.indexOf(form.level), LEVELS.indexOf(user.max))];
    }
    const grantId = await grantAll(provider, { ...details, grantId: details.grantId }, user.sub);
    const result = {
      login: {
        accountId: user.sub,
        acr: LOA[level],
        amr: level === 'high' ? ['eid'] : ['pwd'],
        remember: true,
      },
      consent: { grantId },
    };
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
    return;
  }
  send(res, 405, page('Fehler', '<p>method not allowed</p>'));
}

// --- server -------------------------------------------------------------------

let provider;
let handler;

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://op.invalid');
    const m = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login))?$/);
    if (m) {
      await interaction(provider, req, res, m[1], m[2]);
      return;
    }
    if (url.pathname === '/__test/rotate' && req.method === 'POST') {
      const kid = rotate();
      provider = buildProvider(provider.issuer);
      handler = provider.callback();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kid }));
      return;
    }
    handler(req, res);
  } catch (err) {
    process.stderr.write(`op.mjs: ${req.method} ${req.url}: ${err.stack}\n`);
    if (!res.headersSent) {
      const status = err.statusCode ?? 500;
      send(res, status, page('Fehler', `<p>${htmlEscape(err.message)}</p>`));
    } else {
      res.end();
    }
  }
});

server.listen(config.port ?? 0, '127.0.0.1', () => {
  const { port } = server.address();
  provider = buildProvider(`http://127.0.0.1:${port}`);
  handler = provider.callback();
  process.stdout.write(`OP ready http://127.0.0.1:${port}\n`);
});
server.on('error', (err) => die(`listen: ${err.message}`));
