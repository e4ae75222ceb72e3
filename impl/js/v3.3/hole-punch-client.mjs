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
// What js-libp2p 3.3 needs to punch here (impl/js/README.md says why, with the library's code):
// - identify ignores every observed TCP address and keeps a QUIC one unverified, so DCUtR would
//   advertise no public address: we confirm the address the relay observed ourselves;
// - @libp2p/tcp dials from a fresh ephemeral port each time: every TCP dial here leaves from one
//   fixed local port (dialOpts.localPort, no TCP listener), so the relay's observed address is
//   also the NAT mapping the punch uses; @chainsafe/libp2p-quic already dials every QUIC
//   connection from one client socket;
// - in the TCP simultaneous open B must act as the server, which libp2p's dial queue and yamux
//   do not let it do: B's punch dial is upgraded as an inbound connection (dialAsDcutrServer).
// Two js peers cannot punch over QUIC (client-only QUIC endpoints): the dialer says so at once.
//
// Progress: `holepunch-step: NAME` lines on stderr (relay-reserved, relayed-connection,
// dcutr-started, direct-connection, ping). Logs go to stderr. Any failure: one
// "hole-punch-client: error: ..." line on stderr, exit 1; the dialer gives up at once when the
// punch has definitively failed (the relayed connection closed, or DCUtR failed and the peer
// started no new attempt), not after its own timeout.

class ClientError extends Error {}

const CIRCUIT = '/p2p-circuit'
const PING_PROTOCOL = '/ipfs/ping/1.0.0'
const PING_SIZE = 32
const PING_COUNT = 3
// the priority @libp2p/dcutr gives its hole-punch dials (DCUTR_DIAL_PRIORITY in its dcutr.js)
const DCUTR_DIAL_PRIORITY = 100
// after a failed DCUtR attempt, how long the peer has to start another one before we give up
// (go, rust and js start the next attempt at once)
const DCUTR_RETRY_GRACE_MS = 3_000
// how long identify with the relay may take to tell us our observed (public) address
const OBSERVED_WAIT_MS = 10_000

function log (...args) {
  console.error(new Date().toISOString(), 'hole-punch-client:', ...args)
}

function stepReached (name) {
  console.error(`holepunch-step: ${name}`)
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
    // every TCP dial leaves from this port (the NAT keeps it): see makeNode
    tcpLocalPort: Number(env.HOLEPUNCH_TCP_LOCAL_PORT ?? String(20000 + Math.floor(Math.random() * 40000))),
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

// A service that confirms the address the relay observed for us (identify's observedAddr on a
// direct connection), which js-libp2p would otherwise never advertise: identify drops observed
// TCP addresses and leaves QUIC ones unverified (AutoNAT would have to confirm them).
// `onObserved(text, confirm)` gets each one; with `deferred` the confirming is left to the caller
// (`confirm()`): a public address in our identify makes a go listener try a direct dial first and
// a js one a "unilateral upgrade", 5 s each that always fail behind a NAT, so the dialer
// confirms only when a DCUtR attempt starts, in time for its CONNECT.
function observedAddressConfirmer (settings, onObserved, deferred) {
  return (components) => {
    components.events.addEventListener('peer:identify', (evt) => {
      const { observedAddr, connection } = evt.detail
      if (observedAddr == null || isRelayed(connection)) return
      const text = observedAddr.toString().split('/p2p/')[0]
      const wanted = settings.transport === 'tcp' ? /^\/ip4\/[^/]+\/tcp\/\d+$/ : /^\/ip4\/[^/]+\/udp\/\d+\/quic-v1$/
      if (!wanted.test(text)) return
      const ma = observedAddr.decapsulateCode(421) // /p2p
      const confirm = () => {
        components.addressManager.addObservedAddr(ma)
        components.addressManager.confirmObservedAddr(ma, { type: 'observed' })
        log(`confirmed our observed address ${text}: we now advertise`,
          components.addressManager.getAddresses().map(String))
      }
      log(`${connection.remotePeer} observed us at ${text}`)
      if (!deferred) confirm()
      onObserved(text, confirm)
    })
    return { [Symbol.toStringTag]: 'holepunch:observed-address' }
  }
}

// DCUtR as A (the dialer of the relayed connection) reports its outcome only in log lines: wrap
// its stream handler to learn when an attempt starts and how it ends. Must run before start().
function watchDcutr (node, events) {
  const service = node.services.dcutr
  const original = service.handleIncomingUpgrade
  service.handleIncomingUpgrade = async (stream, connection) => {
    const attempt = events.started(connection)
    try {
      await original(stream, connection)
      events.ended(connection, attempt, null)
    } catch (err) {
      events.ended(connection, attempt, err)
      throw err
    }
  }
}

// DCUtR's TCP punch is a simultaneous open: both sides dial, and B (the side with the inbound
// relayed connection) must act as the server on the new connection. js-libp2p 3.3 does not get
// there by itself, for two reasons:
// - @libp2p/dcutr asks for it (`openConnection(..., { initiator: false })`) and the upgrader
//   honours `initiator`, but the dial queue (DialQueue.dial, libp2p connection-manager/
//   dial-queue.js) builds the transport's dial options from peerId, priority, multiaddrs, signal
//   and onProgress only: `initiator` is lost, both sides start noise as initiators ("handshake
//   stage 1 validation fail: message is not long enough");
// - @chainsafe/libp2p-yamux picks its role from the connection's direction (`this.client =
//   maConn.direction === 'outbound'`, muxer.js), not from the upgrade: both would be yamux
//   clients ("Both endpoints are clients").
// So for B's punch dial (a dial at DCUtR's priority while we hold an inbound relayed connection
// from that peer) we upgrade the new socket as the inbound side: `initiator: false` and direction inbound.
function dialAsDcutrServer (components, transport) {
  const dial = transport.dial.bind(transport)
  transport.dial = (ma, options) => {
    // a peer's DCUtR addresses may lack /p2p/<id> (go-libp2p sends them bare): then the dial
    // names no peer, and any inbound relayed connection makes us B
    const asB = options?.priority === DCUTR_DIAL_PRIORITY &&
      components.connectionManager.getConnections(options.peerId).some((c) => isRelayed(c) && c.direction === 'inbound')
    if (!asB) return dial(ma, options)
    log(`DCUtR: dialing ${ma} as B, the server of the simultaneous open`)
    const upgrader = Object.create(options.upgrader)
    upgrader.upgradeOutbound = (maConn, opts) => {
      maConn.direction = 'inbound'
      return options.upgrader.upgradeOutbound(maConn, { ...opts, initiator: false })
    }
    return dial(ma, { ...options, initiator: false, upgrader })
  }
  return transport
}

async function makeNode (settings, { listen = [], dcutrEvents, onObserved, deferConfirm = false }) {
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
    // One local port for every TCP dial (libuv binds with SO_REUSEADDR, so sockets to different
    // peers share it), and no TCP listener on it (a listening socket would make that bind fail).
    // The punch is a TCP simultaneous open from this port: no listener is needed.
    const tcpTransport = tcp({ dialOpts: { localPort: settings.tcpLocalPort } })
    transports.push((components) => dialAsDcutrServer(components, tcpTransport(components)))
  } else {
    const { quic } = await import('@chainsafe/libp2p-quic')
    transports.push(quic())
  }
  const node = await createLibp2p({
    start: false,
    addresses: { listen },
    transports,
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      dcutr: dcutr(),
      ping: ping(),
      observed: observedAddressConfirmer(settings, onObserved, deferConfirm)
    }
  })
  if (dcutrEvents != null) watchDcutr(node, dcutrEvents)
  await node.start()
  return node
}

function observedAddress () {
  let resolve
  const promise = new Promise((res) => { resolve = res })
  const observed = {
    promise,
    confirm: null, // confirms the first address seen (when the node defers confirming)
    onObserved: (addr, confirm) => {
      observed.confirm ??= confirm
      resolve(addr)
    }
  }
  return observed
}

async function waitObserved (observed, what) {
  const timeout = sleep(OBSERVED_WAIT_MS).then(() => null)
  const addr = await Promise.race([observed.promise, timeout])
  if (addr == null) {
    throw new ClientError(`${what}: the relay reported no public observed address within ${OBSERVED_WAIT_MS / 1000} s, ` +
      'so DCUtR would advertise no address a peer could dial: the punch cannot work')
  }
  return addr
}

async function runListener (settings, redis) {
  const { multiaddr } = await import('@multiformats/multiaddr')
  const relayAddr = await blpop(redis, settings.relayKey, 300_000)
  log('relay address:', relayAddr)
  // listening on the relay's /p2p-circuit address makes the reservation during start()
  const observed = observedAddress()
  if (settings.transport === 'tcp') log('every TCP dial leaves from local port', settings.tcpLocalPort)
  const node = await step(`reserving a slot on the relay ${relayAddr}`, 60_000,
    () => makeNode(settings, { listen: [multiaddr(relayAddr).encapsulate(CIRCUIT).toString()], onObserved: observed.onObserved }))
  const addrs = node.getMultiaddrs().map(String)
  log('peer id', node.peerId.toString(), 'addresses', addrs)
  if (!addrs.some((a) => a.includes(CIRCUIT))) {
    throw new ClientError(`no reservation on the relay ${relayAddr}: we have no /p2p-circuit address (${addrs.join(', ') || 'none'})`)
  }
  stepReached('relay-reserved')
  const seen = await Promise.race([observed.promise, sleep(OBSERVED_WAIT_MS).then(() => null)])
  if (seen == null) log(`warning: the relay reported no public observed address within ${OBSERVED_WAIT_MS / 1000} s: DCUtR will advertise none`)
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
  const observed = observedAddress()
  // what DCUtR (as A: the listener starts it on its inbound relayed connection) did so far
  const dcutr = { attempts: 0, running: 0, lastFailure: null, lastEnded: 0 }
  const dcutrEvents = {
    started: (conn) => {
      if (!conn.remotePeer.equals(listener)) return null
      dcutr.attempts++
      dcutr.running++
      if (dcutr.attempts === 1) {
        stepReached('dcutr-started')
        observed.confirm?.() // now, so that our CONNECT carries it (see observedAddressConfirmer)
      }
      log(`DCUtR attempt ${dcutr.attempts} started by ${listener}`)
      return dcutr.attempts
    },
    ended: (conn, attempt, err) => {
      if (attempt == null) return
      dcutr.running--
      dcutr.lastEnded = Date.now()
      if (err != null) {
        dcutr.lastFailure = `attempt ${attempt}: ${err.name ?? 'Error'}: ${err.message ?? err}`
        log(`DCUtR ${dcutr.lastFailure}`)
      }
    }
  }
  if (settings.transport === 'tcp') log('every TCP dial leaves from local port', settings.tcpLocalPort)
  const node = await makeNode(settings, { dcutrEvents, onObserved: observed.onObserved, deferConfirm: true })
  log('peer id', node.peerId.toString())
  node.addEventListener('connection:open', (evt) => {
    log('connection open:', evt.detail.remoteAddr.toString(), evt.detail.direction, isRelayed(evt.detail) ? 'relayed' : 'direct')
  })

  // the relay first: identify with it tells us our public address, which DCUtR must advertise
  await step(`connecting to the relay ${relayAddr}`, 30_000, (signal) => node.dial(multiaddr(relayAddr), { signal }))
  const publicAddr = await waitObserved(observed, `connected to the relay ${relayAddr}`)
  log('our public address (observed by the relay):', publicAddr)

  const circuit = multiaddr(`${relayAddr}${CIRCUIT}/p2p/${listener}`)
  const dialStarted = Date.now()
  const relayed = await step(`dialing the listener through the relay (${circuit})`, 60_000,
    (signal) => node.dial(circuit, { signal }))
  log('relayed connection up:', relayed.remoteAddr.toString())
  stepReached('relayed-connection')

  // the listener (the inbound side of the relayed connection) starts DCUtR; we wait for the
  // direct connection it produces, and give up as soon as none can come
  const started = Date.now()
  if (settings.transport === 'quic') await refuseJsQuicPeer(node, listener)
  let direct
  while ((direct = node.getConnections(listener).find((c) => c.status === 'open' && !isRelayed(c))) == null) {
    const state = `connections: ${describeConnections(node, listener)}`
    if (relayed.status !== 'open') {
      throw new ClientError(`the relayed connection to ${listener} closed (${relayed.status}) with no direct one: ` +
        `the hole punch failed${dcutr.lastFailure != null ? ` (DCUtR: ${dcutr.lastFailure})` : ''} (${state})`)
    }
    if (dcutr.lastFailure != null && dcutr.running === 0 && Date.now() - dcutr.lastEnded > DCUTR_RETRY_GRACE_MS) {
      throw new ClientError(`DCUtR failed (${dcutr.lastFailure}) and ${listener} started ` +
        `no new one within ${DCUTR_RETRY_GRACE_MS / 1000} s: the hole punch failed (${state})`)
    }
    if (Date.now() - started > settings.directWaitMs) {
      throw new ClientError(`no direct connection to ${listener} after ${settings.directWaitMs / 1000} s: ` +
        `DCUtR did not upgrade (${dcutr.attempts} attempts; ${state})`)
    }
    await sleep(50)
  }
  const addr = direct.remoteAddr.toString()
  const timeToDirect = Date.now() - dialStarted
  log(`direct connection after ${((Date.now() - started) / 1000).toFixed(1)} s:`, addr)
  if (addr.includes(CIRCUIT)) throw new ClientError(`refusing to ping over a relayed connection ${addr}`)
  stepReached('direct-connection')
  const rtts = await step(`pinging over the direct connection ${addr}`, 30_000, (signal) => pingRtts(direct, PING_COUNT, signal))
  stepReached('ping')
  log(`ping over ${addr}: ${rtts.map((r) => r.toFixed(1)).join(', ')} ms`)
  return { rtts, timeToDirect }
}

// Two js-libp2p peers cannot punch over QUIC: @chainsafe/libp2p-quic dials every connection from
// a client-only quinn endpoint (napi `Client`: an ephemeral UDP port, no server config) and
// accepts only on its listener's socket, which never sends first. Each side's NAT mapping is
// for a socket that cannot accept, so no connection can form: say so at once.
async function refuseJsQuicPeer (node, listener) {
  let agent = ''
  const until = Date.now() + 5_000
  while (agent === '' && Date.now() < until) {
    const peer = await node.peerStore.get(listener).catch(() => null)
    const raw = peer?.metadata?.get('AgentVersion')
    if (raw != null) agent = new TextDecoder().decode(raw)
    else await sleep(50)
  }
  log('listener agent:', agent || 'unknown')
  if (agent.startsWith('js-libp2p/')) {
    throw new ClientError(`the listener is ${agent.split(' ')[0]} over QUIC: two js-libp2p peers cannot hole-punch ` +
      'over QUIC (each dials from a client-only QUIC endpoint that cannot accept, impl/js/README.md)')
  }
}

function median (values) {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
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
  const { rtts, timeToDirect } = await runDialer(settings, redis)
  // the result is the last stdout line; leave at once, without a teardown that could hang
  process.stdout.write(JSON.stringify({
    rtt_to_holepunched_peer_millis: Math.round(median(rtts)),
    time_to_direct_ms: timeToDirect,
    rtt_samples_millis: rtts.map((r) => Math.round(r * 10) / 10)
  }) + '\n')
  process.exit(0)
}

main().catch((err) => {
  if (!(err instanceof ClientError)) log('unexpected failure:', err)
  fail(err instanceof ClientError ? err.message : `${err?.name ?? 'Error'}: ${err?.message ?? err}`)
})
