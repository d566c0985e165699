#!/usr/bin/env bash
# make-audio.sh OUTDIR: the callee's audio, as SIPp's rtp_stream plays it
# (WAV, 8 kHz, mono, 8-bit G.711 µ-law = RTP payload type 0, PCMU).
#   human.wav   "Hello?" then about 4 s of silence: AMD() should say HUMAN
#   machine.wav a voicemail greeting of about 10 s: AMD() should say MACHINE
#   rig-voicemail.wav  the listener's answering machine (Asterisk plays it, so 16-bit
#               linear): a greeting of about 6 s, then a 1 kHz beep of 0.5 s
set -euo pipefail
out=$1
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ulaw() {  # ulaw IN OUT EFFECT...
  local in=$1 out=$2; shift 2
  sox -G "$in" -r 8000 -c 1 -e u-law -b 8 -t wav "$out" "$@"
}

if [ ! -s "$out/human.wav" ]; then
  espeak-ng -w "$tmp/hello.wav" "Hello?"
  ulaw "$tmp/hello.wav" "$tmp/human.wav" pad 0 4
  mv "$tmp/human.wav" "$out/human.wav"
fi
if [ ! -s "$out/machine.wav" ]; then
  espeak-ng -s 150 -w "$tmp/greeting.wav" "Hi, you have reached the voicemail of Alex Morgan. \
I am not able to take your call right now. Please leave your name, your number and a short \
message after the tone, and I will call you back as soon as I can. Thank you and have a nice day."
  ulaw "$tmp/greeting.wav" "$tmp/machine.wav" pad 0.3 trim 0 10.5
  mv "$tmp/machine.wav" "$out/machine.wav"
fi
if [ ! -s "$out/rig-voicemail.wav" ]; then
  espeak-ng -s 150 -w "$tmp/vm.wav" "Hello, this is the voicemail of Sam Lee. \
Please leave a message after the tone."
  sox -G "$tmp/vm.wav" -r 8000 -c 1 -e signed-integer -b 16 "$tmp/vm8.wav" pad 0.3 0.5
  sox -n -r 8000 -c 1 -e signed-integer -b 16 "$tmp/beep.wav" synth 0.5 sine 1000 vol 0.5
  sox "$tmp/vm8.wav" "$tmp/beep.wav" "$tmp/rig-voicemail.wav"
  mv "$tmp/rig-voicemail.wav" "$out/rig-voicemail.wav"
fi
