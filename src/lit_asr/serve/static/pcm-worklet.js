// AudioWorklet: the microphone's float samples -> 16-bit PCM messages of about 100 ms for the WebSocket.
class Pcm16Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunk = new Int16Array(Math.round(sampleRate / 10));
    this.filled = 0;
    // "flush" (when recording stops) sends what is left, marked last, so no audio is lost.
    this.port.onmessage = (event) => {
      if (event.data === "flush") this.post(true);
    };
  }

  post(last) {
    const pcm = this.chunk.slice(0, this.filled);
    this.port.postMessage({ pcm: pcm.buffer, last }, [pcm.buffer]);
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const frames = channels[0].length;
    for (let i = 0; i < frames; i++) {
      let sum = 0;
      for (const channel of channels) sum += channel[i];
      const sample = Math.max(-1, Math.min(1, sum / channels.length));
      this.chunk[this.filled++] = sample < 0 ? sample * 0x8000 : sample * 0x7fff;
      if (this.filled === this.chunk.length) this.post(false);
    }
    return true;
  }
}

registerProcessor("pcm16-capture", Pcm16Capture);
