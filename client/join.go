package client

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sanping/sanping/client/live"
	"github.com/sanping/sanping/protocol"
)

func join(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("join", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "the Sanping server, e.g. https://sanping.example.org:8080")
	consultation := fs.String("consultation", "", "consultation ID")
	token := fs.String("token", "", "station token spt_..., or a session cookie name=value (default $SANPING_TOKEN)")
	video := fs.String("video", "", "video to publish as the camera: a file, looped (.ivf VP8 or .h264 Annex B), or a live stream:\n"+
		"\"-\" reads IVF from standard input (ffmpeg ... -c:v libvpx -deadline realtime -g 30 -f ivf -), \"h264:-\" H.264,\nor a named pipe")
	audio := fs.String("audio", "", "audio to publish as the microphone, looped: .ogg (Opus)")
	imaging := fs.String("imaging", "", "second video to publish as imaging (ultrasound capture): as -video")
	insecure := fs.Bool("insecure", false, "accept any TLS certificate (test servers only)")
	verbose := fs.Bool("v", false, "log details, pion's included")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: sanping-station join -server URL -consultation ID [-token spt_...] [-video f.ivf|f.h264] [-audio f.ogg] [-imaging f.ivf]\n\n"+
			"Joins the consultation's live room, publishes the files and prints participant events, chat\n"+
			"and view operations, one a line, until interrupted. It reconnects by itself after a drop.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected %q", fs.Arg(0))
	}
	if *token == "" {
		*token = os.Getenv("SANPING_TOKEN")
	}
	if *server == "" || *consultation == "" || *token == "" {
		return usagef("-server, -consultation and -token (or $SANPING_TOKEN) are needed")
	}
	u, err := liveURL(*server, *consultation)
	if err != nil {
		return err
	}
	header, err := credentialHeader(*token)
	if err != nil {
		return err
	}
	p, err := live.Join(ctx, live.Config{
		URL: u, Header: header, Video: *video, Audio: *audio, Imaging: *imaging,
		Dialer: dialer(*insecure), Logger: newLogger(stderr, *verbose), Name: "sanping-station join", Reconnect: true,
	})
	if err != nil {
		return err
	}
	defer p.Close()
	line := func(format string, a ...any) {
		fmt.Fprintf(stdout, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
	}
	ops, events := p.Ops(), p.Events()
	for ops != nil || events != nil {
		select {
		case <-ctx.Done():
			printReceived(line, p.Stats())
			return nil
		case a, ok := <-ops:
			if !ok {
				ops = nil
				continue
			}
			line("%s", describeOp(a))
		case m, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			line("%s", describeEvent(m))
		}
	}
	printReceived(line, p.Stats())
	return p.Err()
}

// describeOp is one line for an applied view op: its number, who, and the op as JSON.
func describeOp(a protocol.OpApplied) string {
	op := a.Op
	op.Sent = 0
	b, _ := json.Marshal(op)
	return fmt.Sprintf("op %d by %s: %s", a.Seq, a.By, b)
}

// describeEvent is one line for any other message from the server.
func describeEvent(m protocol.Message) string {
	undecodable := fmt.Sprintf("%s: %s", m.Type, m.Data)
	switch m.Type {
	case protocol.TypeWelcome:
		var w protocol.Welcome
		if json.Unmarshal(m.Data, &w) != nil {
			return undecodable
		}
		verb := "joined"
		if w.Resumed {
			verb = "resumed"
		}
		return fmt.Sprintf("%s consultation %d as %s: %d participants, view at op %d, driver %s",
			verb, w.Consultation, w.Participant, len(w.Participants), w.Snapshot.Seq, orNobody(w.Control.Driver))
	case protocol.TypeParticipant:
		var e protocol.ParticipantEvent
		if json.Unmarshal(m.Data, &e) != nil {
			return undecodable
		}
		pa := e.Participant
		var tracks []string
		for _, t := range pa.Tracks {
			tracks = append(tracks, t.Label)
		}
		s := fmt.Sprintf("participant %s %s %q (%s", e.Event, pa.ID, pa.Name, pa.Role)
		if pa.Institution != "" {
			s += ", " + pa.Institution
		}
		if len(tracks) > 0 {
			s += ", publishing " + strings.Join(tracks, " ")
		}
		if pa.Connection != "" {
			s += ", over " + pa.Connection
		}
		return s + ")"
	case protocol.TypeControlled:
		var c protocol.ControlState
		if json.Unmarshal(m.Data, &c) != nil {
			return undecodable
		}
		s := "control: driver " + orNobody(c.Driver)
		if len(c.Requests) > 0 {
			s += ", asking " + strings.Join(c.Requests, " ")
		}
		return s
	case protocol.TypeChatMessage:
		var c protocol.ChatMessage
		if json.Unmarshal(m.Data, &c) != nil {
			return undecodable
		}
		return fmt.Sprintf("chat %s (%s): %s", c.Name, c.Participant, c.Text)
	case protocol.TypeSnapshot:
		var s protocol.Snapshot
		if json.Unmarshal(m.Data, &s) != nil {
			return undecodable
		}
		return fmt.Sprintf("snapshot at op %d", s.Seq)
	case protocol.TypeError:
		var e protocol.Error
		if json.Unmarshal(m.Data, &e) != nil {
			return undecodable
		}
		if e.Ref != 0 {
			return fmt.Sprintf("error %s (request %d): %s", e.Code, e.Ref, e.Message)
		}
		return fmt.Sprintf("error %s: %s", e.Code, e.Message)
	case protocol.TypeBye:
		var b protocol.Bye
		if json.Unmarshal(m.Data, &b) != nil {
			return undecodable
		}
		return "bye: " + b.Reason
	}
	return undecodable
}

func orNobody(s string) string {
	if s == "" {
		return "nobody"
	}
	return s
}

// printReceived sums up the media received, a line per remote track.
func printReceived(line func(string, ...any), s live.Stats) {
	for _, t := range s.Tracks {
		lost := 0.0
		if t.Expected > 0 {
			lost = 100 * float64(t.Lost()) / float64(t.Expected)
		}
		what := fmt.Sprintf("%d packets", t.Packets)
		if t.Kind == "video" {
			what = fmt.Sprintf("%d frames (%d keyframes), first after %v", t.Frames, t.Keyframes, t.FirstFrame.Round(time.Millisecond))
		}
		line("received %s %s %s from %s: %s, %.1f%% lost", t.Label, t.Kind, t.Codec, t.Participant, what, lost)
	}
	if s.Reconnects > 0 {
		line("reconnected %d times", s.Reconnects)
	}
}
