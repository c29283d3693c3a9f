package sfu

import (
	"context"
	"fmt"

	"github.com/pion/webrtc/v4"
)

// WHIP ingests a stream pushed by an encoder (RFC 9725): a publish-only peer made from one
// complete offer. The answer carries all of the SFU's candidates, since WHIP clients need not
// trickle. Its tracks are forwarded like anyone else's, audio as "microphone" and video as
// "imaging". Deleting the WHIP resource is p.Close.
func (s *SFU) WHIP(ctx context.Context, room int64, peer string, offerSDP string, opts PeerOptions) (string, *Peer, error) {
	p, err := s.join(room, peer, nil, opts, true)
	if err != nil {
		return "", nil, err
	}
	gathered := webrtc.GatheringCompletePromise(p.pub)
	if _, err := p.answer(offerSDP, nil); err != nil {
		p.Close()
		return "", nil, err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		p.Close()
		return "", nil, fmt.Errorf("sfu: WHIP: gathering candidates: %w", ctx.Err())
	}
	return p.pub.LocalDescription().SDP, p, nil
}
