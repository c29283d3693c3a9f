import { describe, expect, it } from 'vitest';
import { checkReachability } from './precall';

// A peer connection that gathers the given candidates, then ends gathering.
function gathering(candidates: string[]) {
  return () => {
    const pc = {
      onicecandidate: null as ((e: { candidate: { candidate: string } | null }) => void) | null,
      closed: false,
      createDataChannel: () => ({}),
      createOffer: async () => ({ type: 'offer', sdp: '' }),
      setLocalDescription: async () => {
        setTimeout(() => {
          for (const c of candidates) pc.onicecandidate?.({ candidate: { candidate: c } });
          pc.onicecandidate?.({ candidate: null });
        }, 0);
      },
      close: () => void (pc.closed = true),
    };
    return pc as unknown as RTCPeerConnection;
  };
}

const servers = [{ urls: ['turn:turn.example:3478?transport=udp'], username: 'u', credential: 'c' }];
const host = 'candidate:1 1 udp 2122260223 192.168.1.5 50000 typ host';
const srflx = 'candidate:2 1 udp 1686052607 203.0.113.7 50000 typ srflx raddr 192.168.1.5 rport 50000';
const relay = 'candidate:3 1 udp 41885439 198.51.100.1 49152 typ relay raddr 203.0.113.7 rport 50000';

describe('checkReachability', () => {
  it('says direct when UDP reaches the server and comes back, relay when only TURN does, none otherwise', async () => {
    globalThis.RTCPeerConnection ??= function () {} as unknown as typeof RTCPeerConnection;
    expect(await checkReachability(servers, 1000, gathering([host, srflx, relay]))).toBe('direct');
    expect(await checkReachability(servers, 1000, gathering([host, relay]))).toBe('relay');
    expect(await checkReachability(servers, 1000, gathering([host]))).toBe('none');
    expect(await checkReachability([], 1000, gathering([host, srflx]))).toBe('unknown');
  });
});
