// Sanping's first live client: joins a consultation's room (docs/protocol.md), publishes camera
// and microphone (and optionally a screen as the imaging feed), shows the others' video, the
// shared view state and chat. Plain JavaScript, no build step. window.sanping exposes the state
// for the browser tests.
'use strict';

const $ = (sel) => document.querySelector(sel);
const state = {
  consultation: 0, ws: null, me: '', seq: 0, view: null, participants: new Map(), control: {driver: '', requests: []},
  pub: null, sub: null, subQueue: Promise.resolve(), pubCandidates: [], subCandidates: [], local: null, screen: null,
  capture: Promise.resolve(), // camera and screen, started at join
  arrived: [], // sub tracks of the offer being answered, shown once the answer is sent
  remote: new Map(), // participant -> {figure, video, stream}
  nextId: 1, errors: [], reconnects: 0, closing: false, lastOps: [],
  joinAt: 0, timeline: {}, // when each step of joining happened, ms after join started
};
window.sanping = state;

// mark notes the first time a step of joining happened; the browser tests read the timeline
// to tell where the wait before the first remote frame goes.
function mark(step, at = performance.now()) {
  if (state.joinAt && at && !(step in state.timeline)) state.timeline[step] = Math.round(at - state.joinAt);
}

function setStatus(t) { $('#status').textContent = t; }
function showError(t) { $('#error').textContent = t; state.errors.push(t); }

async function api(method, path, body) {
  const res = await fetch(path, {method, headers: body ? {'Content-Type': 'application/json'} : {}, body: body ? JSON.stringify(body) : undefined, credentials: 'same-origin'});
  const data = res.headers.get('Content-Type')?.includes('json') ? await res.json() : null;
  if (!res.ok) throw new Error((data && data.detail) || res.status);
  return data;
}

// Sign in, or use the session the browser already has.
async function signedIn() {
  try {
    const s = await api('GET', '/api/session');
    $('#me').textContent = s.user.displayName || s.user.username;
    return true;
  } catch { return false; }
}

$('#login').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  try {
    await api('POST', '/api/login', {username: f.get('username'), password: f.get('password')});
    await showJoin();
  } catch (err) { $('#login-error').textContent = '登录失败 / Sign-in failed: ' + err.message; }
});

async function showJoin() {
  if (!(await signedIn())) return;
  $('#login-box').hidden = true;
  $('#join-box').hidden = false;
  const c = new URLSearchParams(location.search).get('c');
  if (c) { $('#join [name=consultation]').value = c; }
  if (c && new URLSearchParams(location.search).get('auto') === '1') join(Number(c), true, false);
}

$('#join').addEventListener('submit', (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  join(Number(f.get('consultation')), f.get('camera') === 'on', f.get('screen') === 'on');
});

function send(type, data, id) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({type, id, data}));
}

async function join(consultation, camera, screen) {
  state.joinAt = performance.now();
  state.timeline = {};
  state.consultation = consultation;
  $('#join-box').hidden = true;
  $('#room').hidden = false;
  // The camera starts (~0.6 s in headless Chromium) while the room is joined: receiving the
  // others does not wait for it, only publishing does.
  state.capture = capture(camera, screen);
  connect();
}

async function capture(camera, screen) {
  if (camera && !state.local) {
    try {
      state.local = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 640, height: 480}});
      $('#local').srcObject = state.local;
      mark('camera');
    } catch (err) { showError('摄像头失败 / camera failed: ' + err.message); }
  }
  if (screen && !state.screen) {
    try { state.screen = await navigator.mediaDevices.getDisplayMedia({video: true}); } catch (err) { showError('屏幕共享失败 / screen capture failed: ' + err.message); }
  }
}

function connect() {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${proto}://${location.host}/api/consultations/${state.consultation}/live`);
  state.ws = ws;
  setStatus('连接中 / connecting');
  ws.onopen = () => {
    mark('ws.open');
    const resume = sessionStorage.getItem('sanping.resume.' + state.consultation) || '';
    // A page load never has its old peer connections: media starts afresh.
    send('hello', {protocol: 1, client: 'sanping-web/1 ' + navigator.userAgent.slice(0, 120), resume, keepMedia: !!state.pub && resume !== ''});
  };
  ws.onmessage = (e) => handle(JSON.parse(e.data));
  ws.onclose = (e) => {
    setStatus('已断开 / disconnected ' + (e.reason || e.code));
    if (state.closing || e.code === 1008) return;
    state.reconnects++;
    setTimeout(connect, Math.min(5000, 250 * 2 ** Math.min(state.reconnects, 4)));
  };
}

async function handle(m) {
  const d = m.data;
  switch (m.type) {
    case 'welcome': return welcome(d);
    case 'op.applied': return applied(d);
    case 'snapshot': state.seq = d.seq; state.view = d.state; return render();
    case 'participant': state.participants.set(d.participant.id, d.participant); if (d.event === 'left') dropRemote(d.participant.id); return renderParticipants();
    case 'control.state': state.control = d; return render();
    case 'chat.message': return addChat(d);
    case 'signal': return signal(d);
    case 'error': return showError(`${d.code}: ${d.message}`);
    case 'bye': state.closing = d.reason !== 'replaced' && d.reason !== 'slow'; setStatus('会话结束 / ended: ' + d.reason); return;
  }
}

async function welcome(w) {
  mark('welcome');
  state.me = w.participant;
  sessionStorage.setItem('sanping.resume.' + state.consultation, w.resumeToken);
  state.seq = w.snapshot.seq;
  state.view = w.snapshot.state;
  state.control = w.control;
  state.participants = new Map(w.participants.map((p) => [p.id, p]));
  $('#chat').textContent = '';
  w.chat.forEach(addChat);
  setStatus('已连接 / connected');
  render();
  renderParticipants();
  if (w.resumed && state.pub) return; // the server kept our media
  await startMedia(w.iceServers);
}

// startMedia makes both peer connections at once, so the SFU's sub offer finds its
// connection, and publishes once the camera is on.
async function startMedia(iceServers) {
  for (const pc of [state.pub, state.sub]) if (pc) pc.close();
  state.remote.forEach((r) => r.figure.remove());
  state.remote.clear();
  const config = {iceServers, bundlePolicy: 'max-bundle'};
  state.pubCandidates = []; state.subCandidates = []; state.arrived = [];
  state.sub = new RTCPeerConnection(config);
  state.sub.onicecandidate = (e) => { if (e.candidate) { mark('sub.candidate'); send('signal', {pc: 'sub', candidate: e.candidate.toJSON()}); } };
  state.sub.ontrack = (e) => { mark('sub.track'); state.arrived.push(e); };
  state.sub.oniceconnectionstatechange = () => {
    mark('sub.ice.' + state.sub.iceConnectionState);
    if (state.sub.iceConnectionState === 'failed') send('signal', {pc: 'sub', restart: true});
  };
  state.sub.onconnectionstatechange = () => mark('sub.' + state.sub.connectionState);
  const tracks = {};
  state.pub = new RTCPeerConnection(config);
  state.pub.onicecandidate = (e) => e.candidate && send('signal', {pc: 'pub', candidate: e.candidate.toJSON()});
  state.pub.oniceconnectionstatechange = () => {
    if (state.pub.iceConnectionState === 'failed') offerPub(true);
  };
  state.pub.onconnectionstatechange = () => mark('pub.' + state.pub.connectionState);
  const pub = state.pub;
  await state.capture;
  if (state.pub !== pub) return; // a newer welcome started media again meanwhile
  const stream = new MediaStream();
  if (state.local) {
    for (const t of state.local.getTracks()) {
      stream.addTrack(t);
      const init = {direction: 'sendonly', streams: [stream]};
      if (t.kind === 'video') init.sendEncodings = cameraEncodings(t);
      state.pub.addTransceiver(t, init);
      tracks[t.id] = {id: t.id, kind: t.kind, label: t.kind === 'audio' ? 'microphone' : 'camera'};
    }
  }
  if (state.screen) {
    const t = state.screen.getVideoTracks()[0];
    t.contentHint = 'detail';
    const tr = state.pub.addTransceiver(t, {direction: 'sendonly', streams: [stream]});
    // Imaging: keep the frame rate (ultrasound is motion), lower the resolution first.
    const p = tr.sender.getParameters();
    p.degradationPreference = 'maintain-framerate';
    tr.sender.setParameters(p).catch(() => {});
    tracks[t.id] = {id: t.id, kind: 'video', label: 'imaging'};
  }
  state.pubTracks = tracks;
  if (Object.keys(tracks).length > 0) await offerPub(false);
}

// cameraEncodings: simulcast, so the SFU can pick a layer per receiver from its bandwidth.
// Chromium sends no more layers than the capture size allows (2 below 960x540, 1 below
// 480x270) and leaves the top ones it cannot send dark: a 640x480 camera asked for q, h and f
// sent 160x120 and 320x240 only. So ask for as many as it sends, the top one at full size;
// with two, keep q under it, the layer a starved 4G link can still take.
function cameraEncodings(track) {
  const {width = 640, height = 480} = track.getSettings();
  const q = {rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150000};
  const h = {rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500000};
  const f = {rid: 'f', maxBitrate: 1200000};
  if (width * height >= 960 * 540) return [q, h, f];
  if (width * height >= 480 * 270) return [q, f];
  return [{maxBitrate: f.maxBitrate}];
}

async function offerPub(iceRestart) {
  const offer = await state.pub.createOffer({iceRestart});
  await state.pub.setLocalDescription(offer);
  send('signal', {pc: 'pub', sdp: {type: offer.type, sdp: offer.sdp}, tracks: state.pubTracks});
  mark('pub.offer');
}

async function signal(s) {
  const pc = s.pc === 'pub' ? state.pub : state.sub;
  if (!pc) return;
  const pending = s.pc === 'pub' ? state.pubCandidates : state.subCandidates;
  if (s.sdp) {
    mark(s.pc + '.' + s.sdp.type);
    if (s.pc === 'sub') {
      // One negotiation at a time on "sub": offers are answered in order.
      state.subQueue = state.subQueue.then(async () => {
        await pc.setRemoteDescription(s.sdp);
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
        send('signal', {pc: 'sub', sdp: {type: answer.type, sdp: answer.sdp}});
        mark('sub.answer');
        for (const c of pending.splice(0)) await pc.addIceCandidate(c).catch(() => {});
        // Only now the <video> elements: making one holds the page's thread ~0.3 s (headless
        // Chromium, 2 cores), which in ontrack held back the answer and the candidates.
        for (const e of state.arrived.splice(0)) addRemote(e.streams[0]?.id || 'unknown', e.track, e.streams[0]);
      }).catch((err) => showError('sub: ' + err.message));
    } else {
      await pc.setRemoteDescription(s.sdp).catch((err) => showError('pub: ' + err.message));
      for (const c of pending.splice(0)) await pc.addIceCandidate(c).catch(() => {});
    }
  }
  if (s.candidate) {
    mark(s.pc + '.remote.candidate');
    if (pc.remoteDescription) await pc.addIceCandidate(s.candidate).catch(() => {});
    else pending.push(s.candidate);
  }
}

// addRemote shows a remote track in its participant's video. A track the SFU stops forwarding
// (the participant reloaded and publishes anew) does not end: it is muted and leaves the
// stream it came in, and must leave the video too, or the video keeps showing its last frame
// instead of the new track.
function addRemote(participant, track, source) {
  let r = state.remote.get(participant);
  if (!r) {
    const figure = document.createElement('figure');
    const video = document.createElement('video');
    video.autoplay = true; video.playsInline = true; video.dataset.participant = participant;
    const cap = document.createElement('figcaption');
    cap.textContent = state.participants.get(participant)?.name || participant;
    figure.append(video, cap);
    $('#videos').append(figure);
    r = {figure, video, stream: new MediaStream(), sizes: []};
    video.srcObject = r.stream;
    state.remote.set(participant, r);
    watchFrames(r);
  }
  r.stream.addTrack(track);
  const drop = () => r.stream.removeTrack(track);
  track.onended = drop;
  source?.addEventListener('removetrack', (e) => { if (e.track === track) drop(); });
}

// watchFrames records, from the frames the page presents, when the first remote frame came
// (and when its last packet arrived) and every change of the video's size.
function watchFrames(r) {
  if (!r.video.requestVideoFrameCallback) return;
  const onFrame = (now, m) => {
    if (state.remote.get(r.video.dataset.participant) !== r) return; // gone, or replaced
    mark('frame.received', m.receiveTime);
    mark('frame', m.presentationTime);
    const last = r.sizes[r.sizes.length - 1];
    if (!last || last.w !== m.width || last.h !== m.height) r.sizes.push({t: Math.round(m.presentationTime - state.joinAt), w: m.width, h: m.height});
    r.video.requestVideoFrameCallback(onFrame);
  };
  r.video.requestVideoFrameCallback(onFrame);
}

function dropRemote(participant) {
  const r = state.remote.get(participant);
  if (r) { r.figure.remove(); state.remote.delete(participant); }
}

// applyOp keeps the local copy of the view exactly as the server applies it.
function applyOp(view, a) {
  const op = a.op;
  switch (op.kind) {
    case 'image': view.image = op.image; break;
    case 'window': view.window = op.window; break;
    case 'transform': view.transform = op.transform; break;
    case 'cine': view.cine = op.cine; break;
    case 'pointer': view.pointer = op.pointer; break;
    case 'annotation.add': case 'annotation.update': view.annotations = {...view.annotations, [op.annotation.id]: op.annotation}; break;
    case 'annotation.delete': { const n = {...view.annotations}; delete n[op.annotationId]; view.annotations = n; break; }
    case 'reset': view.window = {center: 0, width: 0}; view.transform = {zoom: 1, panX: 0, panY: 0, rotation: 0, flipH: false, flipV: false, invert: false}; view.cine = {playing: false, fps: 0}; break;
  }
}

function applied(a) {
  if (a.seq !== state.seq + 1) {
    // A gap: reconnect, the welcome brings a snapshot.
    state.ws.close();
    return;
  }
  state.seq = a.seq;
  applyOp(state.view, a);
  state.lastOps.push({seq: a.seq, kind: a.op.kind, latency: a.op.sent ? Date.now() - a.op.sent : null});
  if (state.lastOps.length > 100) state.lastOps.shift();
  render();
}

function sendOp(op) {
  op.sent = Date.now();
  send('op', op, state.nextId++);
}
state.sendOp = sendOp;

document.querySelectorAll('[data-op]').forEach((b) => b.addEventListener('click', () => {
  const v = state.view;
  const t = {...v.transform};
  switch (b.dataset.op) {
    case 'frame+': return sendOp({kind: 'image', image: {...v.image, frame: (v.image.frame || 0) + 1}});
    case 'frame-': return sendOp({kind: 'image', image: {...v.image, frame: Math.max(0, (v.image.frame || 0) - 1)}});
    case 'lung': return sendOp({kind: 'window', window: {center: -600, width: 1500}});
    case 'bone': return sendOp({kind: 'window', window: {center: 300, width: 1500}});
    case 'zoom+': t.zoom = Math.min(50, (t.zoom || 1) * 1.25); return sendOp({kind: 'transform', transform: t});
    case 'zoom-': t.zoom = Math.max(0.05, (t.zoom || 1) / 1.25); return sendOp({kind: 'transform', transform: t});
    case 'rotate': t.rotation = ((t.rotation || 0) + 90) % 360; return sendOp({kind: 'transform', transform: t});
    case 'invert': t.invert = !t.invert; return sendOp({kind: 'transform', transform: t});
    case 'pointer': return sendOp({kind: 'pointer', pointer: {x: Math.random(), y: Math.random(), visible: true}});
    case 'annotate': return sendOp({kind: 'annotation.add', annotation: {id: state.me + '-' + Date.now(), kind: 'arrow', image: v.image, points: [{x: .3, y: .3}, {x: .5, y: .5}], text: '病灶 / lesion'}});
    case 'reset': return sendOp({kind: 'reset'});
  }
}));

document.querySelectorAll('[data-control]').forEach((b) => b.addEventListener('click', () => send('control', {action: b.dataset.control})));

$('#leave').addEventListener('click', () => {
  state.closing = true;
  send('leave');
  sessionStorage.removeItem('sanping.resume.' + state.consultation);
  for (const pc of [state.pub, state.sub]) if (pc) pc.close();
});

$('#chat-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = e.target.elements.text;
  if (input.value.trim()) send('chat', {text: input.value}, state.nextId++);
  input.value = '';
});

function addChat(m) {
  const li = document.createElement('li');
  li.textContent = `${new Date(m.time).toLocaleTimeString('zh-CN')} ${m.name}: ${m.text}`;
  $('#chat').append(li);
}

function render() {
  $('#seq').textContent = '#' + state.seq;
  $('#view').textContent = JSON.stringify(state.view, null, 1);
  const name = (id) => state.participants.get(id)?.name || id;
  $('#driver').textContent = state.control.driver ? name(state.control.driver) : '—';
  $('#requests').textContent = state.control.requests?.length ? '申请 / asking: ' + state.control.requests.map(name).join(', ') : '';
}

function renderParticipants() {
  const ul = $('#participants');
  ul.textContent = '';
  for (const p of state.participants.values()) {
    const li = document.createElement('li');
    li.textContent = `${p.name} (${p.role}${p.institution ? ', ' + p.institution : ''}) ${p.connected ? '' : '· 断线 / away'} ${p.connection || ''} ${(p.tracks || []).map((t) => t.label).join(' ')}`;
    ul.append(li);
  }
}

// Frames decoded per remote participant (the browser tests read this).
state.framesDecoded = async () => {
  const out = {};
  if (!state.sub) return out;
  const stats = await state.sub.getStats();
  const byTrack = {};
  stats.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') byTrack[s.trackIdentifier] = s.framesDecoded || 0; });
  for (const [participant, r] of state.remote) {
    out[participant] = r.stream.getVideoTracks().reduce((n, t) => n + (byTrack[t.id] || 0), 0);
  }
  return out;
};

showJoin();
