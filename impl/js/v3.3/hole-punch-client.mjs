// Hole-punch interop client for js-libp2p 3.3 (contract: impl/README.md).
//
// MODE=listen: listen on `<relay>/p2p-circuit` (js-libp2p makes an explicit Circuit Relay v2
// reservation for that address before start() returns), publish our peer id, stay up. DCUtR is
// started by js-libp2p on the inbound relayed connection.
//
// MODE=dial: dial `<relay>/p2p-circuit/p2p/<listener>`, wait until a connection to the listener
// whose remote address has no /p2p-circuit exists, ping over exactly that connection and print
// {"rtt_to_holepunched_peer_millis": N} as the last stdout line. A relayed connection is never
// pinged: without a direct one the dialer fails and says so.
//
// Logs go to stderr. Any failure: one "hole-punch-client: error: ..." line on stderr, exit 1.

class ClientError extends Error {}

const CIRCUIT = '/p2p-circuit'
const PING_PROTOCOL = '/ipfs/ping/1.0.0'
const PING_SIZE = 32
const PING_COUNT = 3

function log (...args) {
  console.error(new Date().toISOString(), 'hole-punch-client:', ...args)
}

function fail (reason) {
  console.error(`hole-punch-client: error: ${reason}`)
  process.exit(1)
}

function settingsFromEnv (env) {
  const need = (name) => {
    const value = (env[name] ?? '').trim()
    if (value === '') throw new ClientError(`environment variable ${name} is not set`)
    return value
  }
  const mode = need('MODE')
  if (mode !== 'dial' && mode !== 'listen') throw new ClientError(`MODE=${mode}: expected dial or listen`)
  const transport = need('TRANSPORT')
  if (transport !== 'tcp' && transport !== 'quic') throw new ClientError(`TRANSPORT=${transport}: expected tcp or quic`)
  // Unset means the default; this client has noise + yamux only (impls.yaml says so).
  const secureChannel = (env.SECURE_CHANNEL ?? '').trim() || 'noise'
  if (secureChannel !== 'noise') throw new ClientError(`SECURE_CHANNEL=${secureChannel} is not supported (this client supports noise)`)
  const muxer = (env.MUXER ?? '').trim() || 'yamux'
  if (muxer !== 'yamux') throw new ClientError(`MUXER=${muxer} is not supported (this client supports yamux)`)
  const redisAddr = need('REDIS_ADDR')
  if (!/^[^:]+:\d+$/.test(redisAddr)) throw new ClientError(`REDIS_ADDR=${redisAddr}: expected host:port`)
  const testKey = (env.TEST_KEY ?? '').trim()
  const key = (name) => testKey === '' ? name : `${testKey}:${name}`
  return {
    mode,
    transport,
    redisAddr,
    key,
    relayKey: key(transport === 'tcp' ? 'RELAY_TCP_ADDRESS' : 'RELAY_QUIC_ADDRESS'),
    listenAddr: transport === 'tcp' ? '/ip4/0.0.0.0/tcp/0' : '/ip4/0.0.0.0/udp/0/quic-v1',
    deadlineMs: 1000 * Number(env.HOLEPUNCH_DEADLINE_SECONDS ?? '90'),
    directWaitMs: 1000 * Number(env.HOLEPUNCH_DIRECT_WAIT_SECONDS ?? '30')
  }
}

// Run one step under its own timeout; a timeout or error becomes a ClientError naming it.
async function step (what, ms, fn) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new ClientError(`${what}: timed out after ${ms / 1000} s`)), ms)
  })
  try {
    return await Promise.race([fn(AbortSignal.timeout(ms)), timeout])
  } catch (err) {
    if (err instanceof ClientError) throw err
    throw new ClientError(`${what}: ${err?.name ?? 'Error'}: ${err?.message ?? err}`)
  } finally {
    clearTimeout(timer)
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function isRelayed (conn) {
  return conn.remoteAddr.toString().includes(CIRCUIT) || conn.limits != null
}

function describeConnections (node, peer) {
  const conns = node.getConnections(peer)
  if (conns.length === 0) return 'none'
  return conns.map((c) => `[${c.remoteAddr} ${c.direction} ${c.status}${c.limits != null ? ' limited' : ''}]`).join(' ')
}

async function blpop (redis, key, timeoutMs) {
  const item = await redis.blPop(key, Math.max(1, Math.floor(timeoutMs / 1000)))
  if (item == null) throw new ClientError(`nothing arrived on Redis key ${key} within ${Math.floor(timeoutMs / 1000)} s`)
  return item.element
}

// /ipfs/ping/1.0.0 round trips on this exact connection (one stream); milliseconds.
async function pingRtts (conn, count, signal) {
  const stream = await conn.newStream(PING_PROTOCOL, { signal })
  let pending = null // { payload, chunks, received, started, resolve, reject }
  stream.addEventListener('message', (evt) => {
    if (pending == null) return
    const bytes = evt.data.subarray()
    pending.chunks.push(bytes)
    pending.received += bytes.byteLength
    if (pending.received >= PING_SIZE) pending.resolve(performance.now())
  })
  stream.addEventListener('close', () => pending?.reject(new ClientError('ping stream closed before the echo arrived')))
  signal.addEventListener('abort', () => pending?.reject(new ClientError('ping timed out')))
  const rtts = []
  for (let i = 0; i < count; i++) {
    const payload = crypto.getRandomValues(new Uint8Array(PING_SIZE))
    const echoed = new Promise((resolve, reject) => {
      pending = { payload, chunks: [], received: 0, resolve, reject }
    })
    const started = performance.now()
    stream.send(payload)
    const finished = await echoed
    const echo = Buffer.concat(pending.chunks).subarray(0, PING_SIZE)
    if (!Buffer.from(payload).equals(echo)) throw new ClientError('ping echo differs from the payload sent')
    rtts.push(finished - started)
  }
  pending = null
  stream.close().catch(() => {})
  return rtts
}

async function makeNode (settings, extraListen = []) {
  const { createLibp2p } = await import('libp2p')
  const { noise } = await import('@chainsafe/libp2p-noise')
  const { yamux } = await import('@chainsafe/libp2p-yamux')
  const { circuitRelayTransport } = await import('@libp2p/circuit-relay-v2')
  const { dcutr } = await import('@libp2p/dcutr')
  const { identify } = await import('@libp2p/identify')
  const { ping } = await import('@libp2p/ping')
  const transports = [circuitRelayTransport()]
  if (settings.transport === 'tcp') {
    const { tcp } = await import('@libp2p/tcp')
    transports.push(tcp())
  } else {
    const { quic } = await import('@chainsafe/libp2p-quic')
    transports.push(quic())
  }
  return createLibp2p({
    addresses: { listen: [settings.listenAddr, ...extraListen] },
    transports,
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), dcutr: dcutr(), ping: ping() }
  })
}

async function runListener (settings, redis) {
  const { multiaddr } = await import('@multiformats/multiaddr')
  const relayAddr = await blpop(redis, settings.relayKey, 300_000)
  log('relay address:', relayAddr)
  // listening on the relay's /p2p-circuit address makes the reservation during start()
  const node = await step(`reserving a slot on the relay ${relayAddr}`, 60_000,
    () => makeNode(settings, [multiaddr(relayAddr).encapsulate(CIRCUIT).toString()]))
  const addrs = node.getMultiaddrs().map(String)
  log('peer id', node.peerId.toString(), 'addresses', addrs)
  if (!addrs.some((a) => a.includes(CIRCUIT))) {
    throw new ClientError(`no reservation on the relay ${relayAddr}: we have no /p2p-circuit address (${addrs.join(', ') || 'none'})`)
  }
  node.addEventListener('connection:open', (evt) => {
    log('connection open:', evt.detail.remoteAddr.toString(), evt.detail.direction, isRelayed(evt.detail) ? 'relayed' : 'direct')
  })
  await redis.rPush(settings.key('LISTEN_CLIENT_PEER_ID'), node.peerId.toString())
  log('published peer id; waiting for the dialer (DCUtR runs in js-libp2p)')
  for (;;) await sleep(3_600_000) // stay up until the harness stops us
}

async function runDialer (settings, redis) {
  const { multiaddr } = await import('@multiformats/multiaddr')
  const { peerIdFromString } = await import('@libp2p/peer-id')
  const relayAddr = await blpop(redis, settings.relayKey, settings.deadlineMs)
  const listenerText = await blpop(redis, settings.key('LISTEN_CLIENT_PEER_ID'), settings.deadlineMs)
  log('relay address:', relayAddr, 'listener:', listenerText)
  const listener = peerIdFromString(listenerText)
  const node = await makeNode(settings)
  log('peer id', node.peerId.toString(), 'addresses', node.getMultiaddrs().map(String))
  node.addEventListener('connection:open', (evt) => {
    log('connection open:', evt.detail.remoteAddr.toString(), evt.detail.direction, isRelayed(evt.detail) ? 'relayed' : 'direct')
  })

  const circuit = multiaddr(`${relayAddr}${CIRCUIT}/p2p/${listener}`)
  const relayed = await step(`dialing the listener through the relay (${circuit})`, 60_000,
    (signal) => node.dial(circuit, { signal }))
  log('relayed connection up:', relayed.remoteAddr.toString())

  // the listener (the inbound side of the relayed connection) starts DCUtR; we wait for the
  // direct connection it produces
  const started = Date.now()
  let direct
  while ((direct = node.getConnections(listener).find((c) => c.status === 'open' && !isRelayed(c))) == null) {
    if (Date.now() - started > settings.directWaitMs) {
      throw new ClientError(`no direct connection to ${listener} after ${settings.directWaitMs / 1000} s: ` +
        `DCUtR did not upgrade (connections: ${describeConnections(node, listener)})`)
    }
    await sleep(100)
  }
  const addr = direct.remoteAddr.toString()
  log(`direct connection after ${((Date.now() - started) / 1000).toFixed(1)} s:`, addr)
  if (addr.includes(CIRCUIT)) throw new ClientError(`refusing to ping over a relayed connection ${addr}`)
  const rtts = await step(`pinging over the direct connection ${addr}`, 30_000, (signal) => pingRtts(direct, PING_COUNT, signal))
  log(`ping over ${addr}: ${rtts.map((r) => r.toFixed(1)).join(', ')} ms`)
  // the path's RTT is the least of a few: a busy host only ever adds to a sample
  return Math.min(...rtts)
}

async function main () {
  // js-libp2p logs through `debug`, which reads DEBUG when first imported (hence the dynamic
  // imports above): by default show what DCUtR and the relay client do, the reasons for a failure
  process.env.DEBUG ??= 'libp2p:dcutr*,libp2p:circuit-relay:transport*'
  const settings = settingsFromEnv(process.env)
  if (settings.mode === 'dial') { // a listener stays up until stopped
    setTimeout(() => fail(`overall deadline of ${settings.deadlineMs / 1000} s passed`), settings.deadlineMs)
  }
  const { createClient } = await import('redis')
  const redis = createClient({ url: `redis://${settings.redisAddr}`, socket: { connectTimeout: 10_000, reconnectStrategy: false } })
  redis.on('error', (err) => log('redis:', err.message))
  await step(`connecting to Redis at ${settings.redisAddr}`, 15_000, () => redis.connect())
  if (settings.mode === 'listen') {
    await runListener(settings, redis)
    return
  }
  const rtt = await runDialer(settings, redis)
  // the result is the last stdout line; leave at once, without a teardown that could hang
  process.stdout.write(JSON.stringify({ rtt_to_holepunched_peer_millis: Math.round(rtt) }) + '\n')
  process.exit(0)
}

main().catch((err) => {
  if (!(err instanceof ClientError)) log('unexpected failure:', err)
  fail(err instanceof ClientError ? err.message : `${err?.name ?? 'Error'}: ${err?.message ?? err}`)
})
