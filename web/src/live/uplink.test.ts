import { describe, expect, it } from 'vitest';
import { cameraEncodings } from './client';
import { UplinkController, cameraSteps, uplinkSample, uplinkState, type UplinkSample } from './uplink';

const IMAGING = 2_500_000;

/** feed drives a controller with one sample every 1.5 s: estimate and imaging rate in bits/s. */
function feeder(c: UplinkController) {
  let at = 0;
  let imaging = 0;
  let camera = 0;
  const states: string[] = [];
  const feed = (estimate: number | null, imagingRate: number, limited = false, n = 1) => {
    for (let i = 0; i < n; i++) {
      at += 1500;
      imaging += (imagingRate * 1.5) / 8;
      camera += 100_000;
      const s: UplinkSample = { at, estimate, imagingBytes: imaging, imagingLimited: limited, cameraBytes: camera };
      const d = c.update(s);
      if (d.changed) states.push(`${d.step}:${d.state}`);
    }
    return c.step;
  };
  return { feed, states };
}

describe('camera steps', () => {
  it('drop simulcast layers from the top, keep q, then pause', () => {
    const steps = cameraSteps(cameraEncodings(1280, 720));
    expect(steps.map((s) => s.encodings.map((e) => (e.active ? e.rid : '-')).join(''))).toEqual(['qhf', 'qh-', 'q--', '---']);
    expect(steps.map((s) => s.need)).toEqual([925_000, 325_000, 75_000, 0]);
    const two = cameraSteps(cameraEncodings(640, 480));
    expect(two.map((s) => s.encodings.map((e) => (e.active ? e.rid : '-')).join(''))).toEqual(['qf', 'q-', '--']);
  });

  it('lower one encoding before pausing it', () => {
    const steps = cameraSteps(cameraEncodings(320, 240));
    expect(steps).toHaveLength(3);
    expect(steps[1]?.encodings[0]).toMatchObject({ active: true, maxBitrate: 300_000, scaleResolutionDownBy: 2 });
    expect(steps[2]?.encodings[0]?.active).toBe(false);
    expect(steps[0]?.encodings[0]).toMatchObject({ active: true, maxBitrate: 1_200_000, scaleResolutionDownBy: 1 });
  });

  it('name the states', () => {
    expect([0, 1, 2, 3].map((s) => uplinkState(s, 4))).toEqual(['full', 'reduced', 'reduced', 'audio-only']);
    expect(uplinkState(1, 1)).toBe('full');
  });
});

describe('uplink controller', () => {
  const make = () => new UplinkController({ steps: cameraSteps(cameraEncodings(1280, 720)), imagingMax: IMAGING, warmUp: 0 });

  it('leaves the camera alone while the estimate ramps up at the start of a call', () => {
    const c = new UplinkController({ steps: cameraSteps(cameraEncodings(1280, 720)), imagingMax: IMAGING });
    const { feed } = feeder(c);
    // The first seconds: the estimate starts near 300 kbit/s and climbs.
    feed(300_000, 250_000, true, 4);
    expect(c.state).toBe('full');
    // A thin link stays thin past the warm-up: then the camera steps down.
    feed(1_200_000, 1_000_000, true, 6);
    expect(c.state).not.toBe('full');
  });

  it('steps the camera down one step per two short samples: layers, then video, while imaging keeps its rate', () => {
    const c = make();
    const { feed, states } = feeder(c);
    feed(6_000_000, 2_400_000, false, 4);
    expect(c.state).toBe('full');
    // 1.2 Mbit/s: imaging takes its cap, the camera has nothing left.
    feed(1_200_000, 1_000_000, true, 1);
    expect(c.step).toBe(0); // one short sample is not enough
    feed(1_200_000, 1_000_000, true, 1);
    expect(c.step).toBe(1);
    feed(1_200_000, 1_000_000, true, 4);
    expect(states).toEqual(['1:reduced', '2:reduced', '3:audio-only']);
    feed(1_200_000, 1_100_000, true, 10);
    expect(c.state).toBe('audio-only'); // nothing below
  });

  it('takes a moderate shortfall to the lower layers only', () => {
    const c = make();
    const { feed } = feeder(c);
    feed(6_000_000, 2_400_000, false, 2);
    // 3 Mbit/s: imaging 2.5, audio 0.04, the camera 0.46: q and h (0.325), not f (0.925).
    feed(3_000_000, 2_400_000, false, 10);
    expect(c.step).toBe(1);
    expect(c.state).toBe('reduced');
  });

  it('does not flap: one good sample between short ones, or headroom for less than 5 s, changes nothing', () => {
    const c = make();
    const { feed, states } = feeder(c);
    feed(6_000_000, 2_400_000, false, 2);
    for (let i = 0; i < 5; i++) {
      feed(1_000_000, 900_000, true);
      feed(6_000_000, 2_400_000, false);
    }
    expect(states).toEqual([]);
    feed(1_000_000, 900_000, true, 6);
    expect(c.state).toBe('audio-only');
    // Headroom for 4.5 s, then short again: still paused.
    feed(6_000_000, 2_400_000, false, 3);
    feed(1_000_000, 900_000, true, 1);
    expect(c.state).toBe('audio-only');
  });

  it('comes back one step per 5 s of headroom', () => {
    const c = make();
    const { feed, states } = feeder(c);
    feed(6_000_000, 2_400_000, false, 1);
    feed(1_000_000, 900_000, true, 6);
    expect(c.state).toBe('audio-only');
    states.length = 0;
    feed(6_000_000, 2_400_000, false, 4); // 4.5 s of headroom after the first
    expect(c.state).toBe('audio-only');
    feed(6_000_000, 2_400_000, false, 1);
    expect(states).toEqual(['2:reduced']);
    feed(6_000_000, 2_400_000, false, 12);
    expect(states).toEqual(['2:reduced', '1:reduced', '0:full']);
  });

  it('keeps what the imaging feed asked for while a full link holds it back without saying so', () => {
    const c = make();
    const { feed } = feeder(c);
    feed(6_000_000, 2_400_000, false, 4);
    // 0.7 Mbit/s: the encoder gets 0.5 and still reports no limitation. It needs its 2.4.
    feed(700_000, 500_000, false, 6);
    expect(c.state).toBe('audio-only');
    expect(c.imagingDemand).toBe(2_400_000);
    // Paused, the feed gets even less of a thin estimate: still no room for the camera.
    feed(470_000, 210_000, false, 20);
    expect(c.state).toBe('audio-only');
    expect(c.imagingDemand).toBe(2_400_000);
  });

  it('lets what a screen gone still asks for fall while the link has room', () => {
    const c = make();
    const { feed } = feeder(c);
    feed(6_000_000, 2_400_000, false, 4);
    feed(6_000_000, 200_000, false, 20); // 30 s
    expect(c.imagingDemand).toBeLessThan(300_000);
    expect(c.state).toBe('full');
  });

  it('gives a light imaging feed what it uses with room to grow, not its cap', () => {
    const c = make();
    const { feed } = feeder(c);
    // A still screen at 0.4 Mbit/s on a 2 Mbit/s uplink: 0.5 for imaging, the camera keeps all.
    feed(2_000_000, 400_000, false, 10);
    expect(c.state).toBe('full');
    expect(c.imagingNeed(false)).toBe(500_000);
    expect(c.imagingNeed(true)).toBe(IMAGING);
  });

  it('leaves the camera alone without an imaging feed, or before there is an estimate', () => {
    const none = new UplinkController({ steps: cameraSteps(cameraEncodings(1280, 720)), imagingMax: 0 });
    const a = feeder(none);
    a.feed(200_000, 0, false, 20);
    expect(none.state).toBe('full');
    const c = make();
    const b = feeder(c);
    b.feed(null, 0, true, 20);
    expect(c.state).toBe('full');
  });
});

describe('uplink sample', () => {
  it('reads the selected pair estimate and the senders by mid', () => {
    const stats = new Map<string, unknown>(
      [
        { type: 'transport', id: 'T', selectedCandidatePairId: 'CP2' },
        { type: 'candidate-pair', id: 'CP1', availableOutgoingBitrate: 9_000_000, nominated: false, state: 'failed' },
        { type: 'candidate-pair', id: 'CP2', availableOutgoingBitrate: 1_100_000, nominated: true, state: 'succeeded' },
        { type: 'outbound-rtp', id: 'a', kind: 'audio', mid: '0', bytesSent: 5 },
        { type: 'outbound-rtp', id: 'q', kind: 'video', mid: '1', rid: 'q', bytesSent: 100, qualityLimitationReason: 'bandwidth' },
        { type: 'outbound-rtp', id: 'f', kind: 'video', mid: '1', rid: 'f', bytesSent: 200 },
        { type: 'outbound-rtp', id: 'i', kind: 'video', mid: '2', bytesSent: 1000, qualityLimitationReason: 'bandwidth' },
      ].map((s) => [s.id, s]),
    );
    expect(uplinkSample(stats, { camera: '1', imaging: '2' }, 7)).toEqual({ at: 7, estimate: 1_100_000, imagingBytes: 1000, imagingLimited: true, cameraBytes: 300 });
  });
});
