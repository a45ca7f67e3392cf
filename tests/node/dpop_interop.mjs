// Interop check of a sealed-session DPoP server against the independent `dpop` package
// (RFC 9449 client by panva, pinned in package.json).
//
//   node tests/node/dpop_interop.mjs http://127.0.0.1:4321 [ES256|EdDSA]
//
// Steps: login (with one retry on a `use_dpop_nonce` challenge), two reads of /api/me with
// `Authorization: DPoP`, a replay of the second read's exact proof, the bound token sent as a
// Bearer token, a POST proof on a GET. Prints ONE line of JSON on stdout
// ({"ok", "steps", "package_version", ...}) and exits 0 if every expectation held, 1 if not.
// Diagnostics go to stderr.
//
// `EdDSA` makes an Ed25519 key: `dpop` 2.x names its JWS algorithm `Ed25519` (RFC 9864's
// fully-specified name), not `EdDSA` (RFC 8037), so the proofs carry `"alg":"Ed25519"`.

import { createRequire } from 'node:module'
import * as DPoP from 'dpop'

const require = createRequire(import.meta.url)
const PACKAGE_VERSION = require('dpop/package.json').version

const base = (process.argv[2] ?? '').replace(/\/+$/, '')
const algArg = process.argv[3] ?? 'ES256'
const ALGS = { ES256: 'ES256', EdDSA: 'Ed25519', Ed25519: 'Ed25519' }

const steps = []
let nonce // the latest DPoP-Nonce the server sent (RFC 9449 §8.2, §9)
let token // the bound token, replaced by any x-session-token the server sends
let running = 'setup' // the step under way, named if it throws

function log(...args) {
  console.error('[dpop_interop]', ...args)
}

function finish(extra = {}) {
  const failed = steps.filter((s) => !s.ok).map((s) => s.step)
  const ok = failed.length === 0 && extra.error === undefined && steps.length > 0
  const out = { ok, steps, package_version: PACKAGE_VERSION, alg: algArg, base, ...extra }
  if (failed.length > 0) out.failed = failed
  process.stdout.write(JSON.stringify(out) + '\n')
  process.exitCode = ok ? 0 : 1
}

// ---- WWW-Authenticate (RFC 9110 §11.6.1): challenges, auth-params, quoted strings ----

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/
const TOKEN68 = /[-._~+/0-9A-Za-z]/

/** Every challenge of a WWW-Authenticate value: [{scheme, token68, params: {name: value}}]. */
function parseChallenges(value) {
  const s = value ?? ''
  let i = 0
  const out = []
  const ows = () => {
    while (s[i] === ' ' || s[i] === '\t') i++
  }
  const token = () => {
    const start = i
    while (i < s.length && TCHAR.test(s[i])) i++
    return i > start ? s.slice(start, i) : undefined
  }
  const quoted = () => {
    if (s[i] !== '"') return undefined
    i++
    let v = ''
    while (i < s.length) {
      const c = s[i++]
      if (c === '"') return v
      if (c === '\\') {
        if (i >= s.length) return undefined
        v += s[i++]
      } else v += c
    }
    return undefined
  }
  const authParam = () => {
    const start = i
    const name = token()
    if (name !== undefined) {
      ows()
      if (s[i] === '=') {
        i++
        ows()
        const v = s[i] === '"' ? quoted() : token()
        if (v !== undefined) return [name.toLowerCase(), v]
      }
    }
    i = start
    return undefined
  }
  const token68 = () => {
    const start = i
    while (i < s.length && TOKEN68.test(s[i])) i++
    if (i === start) return undefined
    while (s[i] === '=') i++
    const end = i
    ows()
    if (i >= s.length || s[i] === ',') return s.slice(start, end)
    i = start
    return undefined
  }
  for (;;) {
    while (s[i] === ' ' || s[i] === '\t' || s[i] === ',') i++
    if (i >= s.length) break
    const current = out[out.length - 1]
    if (current) {
      const p = authParam()
      if (p) {
        if (current.token68 !== undefined) break
        if (!(p[0] in current.params)) current.params[p[0]] = p[1]
        continue
      }
    }
    const scheme = token()
    if (scheme === undefined) break
    const challenge = { scheme, token68: undefined, params: {} }
    if (s[i] === ' ' || s[i] === '\t') {
      ows()
      const p = authParam()
      if (p) challenge.params[p[0]] = p[1]
      else challenge.token68 = token68()
    }
    out.push(challenge)
  }
  return out
}

function dpopChallenge(res) {
  return parseChallenges(res.headers.get('www-authenticate')).find(
    (c) => c.scheme.toLowerCase() === 'dpop',
  )
}

/** RFC 9449 §9 (401 + DPoP challenge) or §8 (400, challenge or JSON body) use_dpop_nonce. */
function asksForNonce(res, json) {
  if (res.status !== 401 && res.status !== 400) return false
  if (dpopChallenge(res)?.params.error === 'use_dpop_nonce') return true
  return res.status === 400 && json?.error === 'use_dpop_nonce'
}

// ---- HTTP ----

async function send(method, path, { proof, authorization, body } = {}) {
  const headers = {}
  if (proof !== undefined) headers.dpop = proof
  if (authorization !== undefined) headers.authorization = authorization
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(base + path, { method, headers, body, redirect: 'manual' })
  const text = await res.text()
  let json
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  const newNonce = res.headers.get('dpop-nonce')
  if (newNonce !== null) nonce = newNonce
  log(method, path, '->', res.status, res.headers.get('www-authenticate') ?? '', text.slice(0, 200))
  return { res, json, text }
}

/**
 * Sends a request whose proof `makeProof()` makes (with the current nonce); if the server
 * answers use_dpop_nonce with a DPoP-Nonce, retries once with a fresh proof carrying it.
 */
async function withNonceRetry(method, path, makeProof, options = {}) {
  let proof = await makeProof()
  let reply = await send(method, path, { ...options, proof })
  let retried = false
  if (asksForNonce(reply.res, reply.json) && reply.res.headers.get('dpop-nonce') !== null) {
    retried = true
    proof = await makeProof()
    reply = await send(method, path, { ...options, proof })
  }
  return { ...reply, proof, retried }
}

function record(step, expectation, reply, ok, extra = {}) {
  const challenge = reply ? dpopChallenge(reply.res) : undefined
  const entry = {
    step,
    expect: expectation,
    status: reply?.res.status ?? null,
    ok: Boolean(ok),
    ...(reply?.retried ? { nonce_retry: true } : {}),
    ...(challenge ? { www_authenticate: reply.res.headers.get('www-authenticate') } : {}),
    ...extra,
  }
  steps.push(entry)
  if (!entry.ok) log('FAILED', JSON.stringify(entry))
  return entry.ok
}

function isInvalidProof(reply) {
  const c = dpopChallenge(reply.res)
  return reply.res.status === 401 && c?.params.error === 'invalid_dpop_proof'
}

function takeRefreshedToken(reply) {
  const refreshed = reply.res.headers.get('x-session-token')
  if (refreshed) {
    token = refreshed
    return true
  }
  return false
}

// ---- The steps ----

async function main() {
  if (!/^https?:\/\/[^/]+$/.test(base)) {
    throw new Error(`usage: node dpop_interop.mjs http://HOST:PORT [ES256|EdDSA] (got ${JSON.stringify(process.argv[2])})`)
  }
  const alg = ALGS[algArg]
  if (alg === undefined) throw new Error(`unknown algorithm ${JSON.stringify(algArg)}: ES256 or EdDSA`)
  const keypair = await DPoP.generateKeyPair(alg)
  const jkt = await DPoP.calculateThumbprint(keypair.publicKey)
  log('key', alg, 'jkt', jkt)

  const meUrl = `${base}/api/me`
  const dpopAuth = () => `DPoP ${token}`

  // a. Login: a proof for POST {base}/api/login; one retry on use_dpop_nonce.
  running = 'login'
  const login = await withNonceRetry(
    'POST',
    '/api/login',
    () => DPoP.generateProof(keypair, `${base}/api/login`, 'POST', nonce),
    { body: JSON.stringify({ username: 'admin', password: 'letmein' }) },
  )
  token = login.json?.token
  const loginOk = record('login', '200 {"token"}', login, login.res.status === 200 && typeof token === 'string' && token.length > 0)
  if (!loginOk) return

  // b. GET /api/me with the bound token and a proof with ath.
  const read = async (step, expectViews) => {
    running = step
    const authorization = dpopAuth()
    let usedNonce
    const reply = await withNonceRetry(
      'GET',
      '/api/me',
      () => {
        usedNonce = nonce
        return DPoP.generateProof(keypair, meUrl, 'GET', nonce, token)
      },
      { authorization },
    )
    const views = reply.json?.views
    const ok =
      reply.res.status === 200 &&
      reply.json?.user === 'admin' &&
      Number.isInteger(views) &&
      (expectViews === undefined || views === expectViews)
    const refreshed = takeRefreshedToken(reply)
    record(step, expectViews === undefined ? '200 {"user":"admin","views":N}' : `200 views ${expectViews}`, reply, ok, {
      views: views ?? null,
      ...(refreshed ? { token_refreshed: true } : {}),
    })
    return { reply, views, authorization, nonce: usedNonce }
  }
  const first = await read('me')
  // c. Again with a fresh proof: views incremented.
  const second = await read('me_again', Number.isInteger(first.views) ? first.views + 1 : undefined)

  // d. Replay the exact DPoP header of (c) with the same Authorization.
  running = 'replay'
  const replayedNonce = nonce
  const replay = await send('GET', '/api/me', { proof: second.reply.proof, authorization: second.authorization })
  const replayNote =
    dpopChallenge(replay.res)?.params.error === 'use_dpop_nonce' && second.nonce !== replayedNonce
      ? { note: 'the server rotated its nonce after (c): the replay was refused for its stale nonce, its jti was not checked' }
      : {}
  record('replay', '401 DPoP error="invalid_dpop_proof"', replay, isInvalidProof(replay), replayNote)

  // e. The bound token as a Bearer token, with a fresh proof: refused.
  running = 'bearer'
  const bearer = await withNonceRetry('GET', '/api/me', () =>
    DPoP.generateProof(keypair, meUrl, 'GET', nonce, token),
  { authorization: `Bearer ${token}` })
  record('bearer', '401', bearer, bearer.res.status === 401)

  // f. A proof made for POST sent on a GET.
  running = 'wrong_htm'
  const wrongMethod = await withNonceRetry('GET', '/api/me', () =>
    DPoP.generateProof(keypair, meUrl, 'POST', nonce, token),
  { authorization: dpopAuth() })
  record('wrong_htm', '401 DPoP error="invalid_dpop_proof"', wrongMethod, isInvalidProof(wrongMethod))
}

try {
  await main()
  finish()
} catch (error) {
  log(error?.stack ?? String(error))
  steps.push({ step: running, ok: false, error: String(error?.message ?? error) })
  finish({ error: String(error?.message ?? error) })
}
