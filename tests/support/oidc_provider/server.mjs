// A real OpenID Connect provider for the tests (tests/support/oidc.py starts it):
// panva's oidc-provider over HTTPS, authorization code flow with PKCE (S256) only, an
// RS256 key made at start, and a login form of its own that grants consent by itself.
//
//   node server.mjs CONFIG.json
//
// CONFIG: {issuer, host, port, cert, key, accounts_file,
//          clients: [{client_id, client_secret, redirect_uris}], ttl: {...} (optional)}
// accounts_file: {login: {password, email, name, groups: [...]}}, read again on every
// login and every account lookup, so that a test changes or removes someone by
// rewriting it. One line per request on stdout: method, path, status.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import process from 'node:process';

import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function accounts() {
  return JSON.parse(readFileSync(config.accounts_file, 'utf8'));
}

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = randomBytes(8).toString('hex');
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}

const provider = new Provider(config.issuer, {
  clients: config.clients.map((client) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...client,
  })),
  jwks: { keys: [signingKey()] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  responseTypes: ['code'],
  pkce: { methods: ['S256'], required: () => true },
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email'],
    groups: ['groups'],
  },
  // the claims of the granted scopes go in the ID token too, not only to userinfo
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: false } },
  enabledJWA: { idTokenSigningAlgValues: ['RS256'] },
  // seconds; numbers, so that the provider says nothing about its default functions
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    Grant: 3600,
    IdToken: 3600,
    Interaction: 600,
    Session: 3600,
    ...config.ttl,
  },
  async findAccount(ctx, sub) {
    if (!Object.hasOwn(accounts(), sub)) return undefined;
    return {
      accountId: sub,
      async claims() {
        const account = accounts()[sub] ?? {};
        return {
          sub,
          preferred_username: sub,
          name: account.name,
          email: account.email,
          groups: account.groups ?? [],
        };
      },
    };
  },
});
provider.proxy = false; // no X-Forwarded-* is believed: the issuer is what it says

for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error']) {
  provider.on(event, (ctx, error) => {
    console.error(`${event}: ${error.name}: ${error.message} ${error.error_description ?? ''}`);
  });
}

// --- the interaction: a login form, and consent given without asking ----------------------

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(res, uid, status = 200, error = '') {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(`<!doctype html>
<html><head><title>Sign in</title></head><body>
<h1>Sign in</h1>
${error ? `<p class="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<input type="hidden" name="uid" value="${escape(uid)}">
<label>Login <input name="login" autocomplete="username" autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form>
</body></html>
`);
}

function plain(res, status, text) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(`${text}\n`);
}

async function formBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// A grant of everything the client asked for: the scopes of the request, and whatever
// the consent prompt still finds missing (the claims parameter is not enabled).
async function grantAll(interaction, accountId) {
  const { params, prompt: { details } } = interaction;
  let grant = interaction.grantId ? await provider.Grant.find(interaction.grantId) : undefined;
  if (!grant || grant.accountId !== accountId) {
    grant = new provider.Grant({ accountId, clientId: params.client_id });
  }
  const scopes = new Set([...String(params.scope ?? '').split(' '),
    ...(details.missingOIDCScope ?? [])]);
  scopes.delete('');
  grant.addOIDCScope([...scopes].join(' '));
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  for (const [indicator, wanted] of Object.entries(details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, wanted.join(' '));
  }
  return grant.save();
}

async function interaction(req, res, action) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === 'GET' && !action) {
    if (details.prompt.name === 'login') return loginPage(res, details.uid);
    if (details.prompt.name === 'consent') {
      const grantId = await grantAll(details, details.session.accountId);
      return provider.interactionFinished(req, res, { consent: { grantId } },
        { mergeWithLastSubmission: true });
    }
    return plain(res, 400, `unknown prompt ${details.prompt.name}`);
  }
  if (req.method === 'POST' && action === 'login') {
    const form = await formBody(req);
    const login = form.get('login') ?? '';
    const table = accounts();
    const account = Object.hasOwn(table, login) ? table[login] : undefined;
    if (!account || typeof account.password !== 'string'
        || account.password !== (form.get('password') ?? '')) {
      return loginPage(res, details.uid, 401, 'Invalid login or password');
    }
    const grantId = await grantAll(details, login);
    return provider.interactionFinished(req, res, {
      login: { accountId: login },
      consent: { grantId },
    }, { mergeWithLastSubmission: false });
  }
  return plain(res, 405, 'method not allowed');
}

const callback = provider.callback();
const INTERACTION = /^\/interaction\/[^/]+(?:\/(login))?$/;

const server = createServer({ cert: readFileSync(config.cert), key: readFileSync(config.key) },
  (req, res) => {
    const { pathname } = new URL(req.url, config.issuer);
    res.on('finish', () => console.log(`${req.method} ${pathname} ${res.statusCode}`));
    const match = INTERACTION.exec(pathname);
    if (!match) return callback(req, res);
    return interaction(req, res, match[1]).catch((error) => {
      if (error instanceof errors.SessionNotFound) {
        return plain(res, 400, `interaction session not found: ${error.error_description}`);
      }
      console.error(`interaction: ${error.stack}`);
      return plain(res, 500, 'interaction failed');
    });
  });

server.listen(config.port, config.host, () => {
  console.log(`oidc-provider ${config.issuer} listening on ${config.host}:${config.port}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  });
}
