// A certified OpenID Provider (the npm package oidc-provider) for the
// integration tests, on 127.0.0.1 only.
//
//   node idp.mjs genkey KID            prints a new P-256 private JWK
//   node idp.mjs serve                 serves the provider; env:
//     PORT        the port to listen on (127.0.0.1)
//     KEYS_FILE   a JSON file {"keys": [private JWKs]}; the first signs
//
// Besides the provider's own endpoints, test helpers: how many times the
// JWKS was fetched (GET /test/jwks-fetches), and two that obtain tokens the
// way a client would, through the provider's real endpoints:
//   GET /test/access-token   client_credentials with a resource indicator:
//                            a JWT access token (RFC 9068, typ at+jwt)
//   GET /test/id-token       the authorization code flow through the dev
//                            interactions (login, consent): an ID token
// Prints "ready" on stdout once listening.
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import Provider from 'oidc-provider';

const [mode, arg] = process.argv.slice(2);

if (mode === 'genkey') {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  process.stdout.write(JSON.stringify({ ...jwk, kid: arg, alg: 'ES256', use: 'sig' }));
  process.exit(0);
}

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const jwks = JSON.parse(readFileSync(process.env.KEYS_FILE, 'utf8'));
const API = 'urn:authgate:api';
const CLIENT = { id: 'api-client', secret: 'test-only-client-secret', redirect: 'http://127.0.0.1:1/cb' };

const provider = new Provider(issuer, {
  jwks,
  cookies: { keys: ['test-only-cookie-key'] },
  clients: [{
    client_id: CLIENT.id,
    client_secret: CLIENT.secret,
    grant_types: ['client_credentials', 'authorization_code'],
    response_types: ['code'],
    redirect_uris: [CLIENT.redirect],
    token_endpoint_auth_method: 'client_secret_post',
    id_token_signed_response_alg: 'ES256',
  }],
  findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
  pkce: { required: () => false },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => API,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'read',
        audience: API,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

async function post(path, form) {
  const r = await fetch(`${issuer}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
  });
  const json = await r.json();
  if (!r.ok) throw new Error(`${path}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

async function accessToken() {
  const t = await post('/token', {
    grant_type: 'client_credentials', client_id: CLIENT.id, client_secret: CLIENT.secret, resource: API, scope: 'read',
  });
  return t.access_token;
}

// The code flow as a browser would run it, with a cookie jar.
async function idToken() {
  const jar = new Map();
  const go = async (url, init = {}) => {
    const headers = { ...(init.headers || {}), cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') };
    const r = await fetch(new URL(url, issuer), { ...init, headers, redirect: 'manual' });
    for (const c of r.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      jar.set(pair.slice(0, i), pair.slice(i + 1));
    }
    return r;
  };
  const follow = async (r) => {
    while (r.status >= 300 && r.status < 400) {
      const next = r.headers.get('location');
      if (next.startsWith(CLIENT.redirect)) return next;
      r = await go(next);
    }
    return r;
  };
  const auth = new URLSearchParams({
    client_id: CLIENT.id, response_type: 'code', scope: 'openid', redirect_uri: CLIENT.redirect, nonce: 'n-0S6_WzA2Mj',
  });
  let r = await go(`/auth?${auth}`);
  for (const prompt of ['login', 'consent']) {
    const at = await follow(r);
    if (typeof at === 'string') { r = at; break; }
    const uid = new URL(at.url).pathname.split('/').pop();
    r = await go(`/interaction/${uid}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ prompt, login: 'alice', password: 'any' }),
    });
  }
  const done = typeof r === 'string' ? r : await follow(r);
  const code = new URL(done).searchParams.get('code');
  const t = await post('/token', {
    grant_type: 'authorization_code', code, redirect_uri: CLIENT.redirect, client_id: CLIENT.id, client_secret: CLIENT.secret,
  });
  return t.id_token;
}

const callback = provider.callback();
let jwksFetches = 0;
http.createServer(async (req, res) => {
  if (req.url === '/test/jwks-fetches') {
    res.writeHead(200, { 'content-type': 'text/plain' }).end(String(jwksFetches));
    return;
  }
  if (req.url.startsWith('/jwks')) jwksFetches += 1;
  if (req.url === '/test/access-token' || req.url === '/test/id-token') {
    try {
      const token = req.url === '/test/access-token' ? await accessToken() : await idToken();
      res.writeHead(200, { 'content-type': 'text/plain' }).end(token);
    } catch (e) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(String(e && e.stack || e));
    }
    return;
  }
  callback(req, res);
}).listen(port, '127.0.0.1', () => console.log('ready'));
