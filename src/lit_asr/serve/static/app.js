// The lit-asr page: upload a file to POST /v1/transcribe, or stream the microphone over WS /v1/stream.
"use strict";

const $ = (id) => document.getElementById(id);
let modelStreams = false; // whether the model sends partial transcripts while audio arrives

function setStatus(id, text, isError = false) {
  $(id).textContent = text;
  $(id).classList.toggle("error", isError);
}

function showSegments(tableId, segments) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren();
  for (const segment of segments || []) {
    const row = body.insertRow();
    row.insertCell().textContent = segment.start.toFixed(2);
    row.insertCell().textContent = segment.end.toFixed(2);
    row.insertCell().textContent = segment.text;
  }
  $(tableId).hidden = !segments || segments.length === 0;
}

async function loadHealth() {
  try {
    const health = await (await fetch("/health")).json();
    modelStreams = health.streaming;
    $("model").textContent = `${health.model} · ${health.vocabulary_size} tokens · ${health.decoder} · ` +
      `${health.device} · ${health.streaming ? "streaming" : "final transcript at the end of a recording"}`;
  } catch (err) {
    setStatus("model", `server unreachable: ${err}`, true);
  }
}

// ---- upload ----
async function upload(event) {
  event.preventDefault();
  const file = $("file").files[0];
  if (!file) {
    setStatus("upload-status", "choose a wav, flac or ogg file first", true);
    return;
  }
  $("upload").disabled = true;
  $("upload-text").textContent = "";
  showSegments("upload-segments", []);
  setStatus("upload-status", `transcribing ${file.name}…`);
  try {
    const response = await fetch("/v1/transcribe", { method: "POST", body: file });
    const result = await response.json();
    if (!response.ok) {
      setStatus("upload-status", `error ${response.status}: ${result.error}`, true);
      return;
    }
    $("upload-text").textContent = result.text || "(no speech recognised)";
    showSegments("upload-segments", result.segments);
    setStatus("upload-status", `${result.duration.toFixed(2)} s of audio · real-time factor ${result.rtf}`);
  } catch (err) {
    setStatus("upload-status", `request failed: ${err}`, true);
  } finally {
    $("upload").disabled = false;
  }
}

// ---- microphone ----
let recording = null; // {socket, context, media, node, started, stopping}

function socketUrl(path) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
}

function onStreamMessage(event) {
  const message = JSON.parse(event.data);
  if ("error" in message) {
    setStatus("live-status", `error: ${message.error}`, true);
  } else if ("final" in message) {
    $("live-partial").textContent = "";
    $("live-final").textContent = message.final || "(no speech recognised)";
    showSegments("live-segments", message.segments);
    setStatus("live-status", `${message.duration.toFixed(2)} s of audio · real-time factor ${message.rtf}`);
  } else if ("partial" in message) {
    $("live-partial").textContent = message.partial;
  }
}

async function startRecording() {
  if (!navigator.mediaDevices || !window.AudioWorkletNode) {
    setStatus("live-status", "the microphone needs https:// or localhost in this browser", true);
    return;
  }
  $("record").disabled = true;
  $("live-final").textContent = "";
  $("live-partial").textContent = "";
  showSegments("live-segments", []);
  let media = null;
  let context = null;
  try {
    media = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
    context = new AudioContext();
    await context.audioWorklet.addModule("/static/pcm-worklet.js");
    const socket = new WebSocket(socketUrl("/v1/stream"));
    socket.binaryType = "arraybuffer";
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = () => reject(new Error("cannot open the stream"));
    });
    socket.onmessage = onStreamMessage;
    socket.onclose = (event) => {
      const errorShown = $("live-status").classList.contains("error");
      if (event.code !== 1000 && !errorShown) setStatus("live-status", `stream closed (${event.code})`, true);
      stopCapture();
    };
    socket.send(JSON.stringify({ sample_rate: context.sampleRate }));
    const node = new AudioWorkletNode(context, "pcm16-capture");
    node.port.onmessage = ({ data }) => {
      if (socket.readyState !== WebSocket.OPEN) return;
      if (data.pcm.byteLength > 0) socket.send(data.pcm);
      if (data.last) socket.send(JSON.stringify({ eof: true }));
    };
    context.createMediaStreamSource(media).connect(node);
    node.connect(context.destination); // keeps the worklet running; it writes silence
    recording = { socket, context, media, node, started: performance.now() };
    $("record").textContent = "■ Stop";
    $("record").classList.add("recording");
    setStatus("live-status", modelStreams ? "listening…" : "listening… (this model answers when you stop)");
  } catch (err) {
    if (media) media.getTracks().forEach((track) => track.stop());
    if (context) context.close();
    setStatus("live-status", `cannot record: ${err.message || err}`, true);
  } finally {
    $("record").disabled = false;
  }
}

function stopCapture() {
  if (!recording) return;
  const { context, media } = recording;
  recording = null;
  media.getTracks().forEach((track) => track.stop());
  context.close();
  $("record").textContent = "● Record";
  $("record").classList.remove("recording");
  $("record").disabled = false;
}

function stopRecording() {
  if (!recording || recording.stopping) return;
  recording.stopping = true;
  recording.media.getTracks().forEach((track) => track.stop());
  recording.node.port.postMessage("flush"); // the worklet sends its last samples, then eof goes out (above)
  const seconds = (performance.now() - recording.started) / 1000;
  setStatus("live-status", `recognising ${seconds.toFixed(1)} s of audio…`);
  $("record").disabled = true; // until the final answer closes the socket (stopCapture)
}

$("upload-form").addEventListener("submit", upload);
$("record").addEventListener("click", () => (recording ? stopRecording() : startRecording()));
loadHealth();
