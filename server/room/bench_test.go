package room

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sanping/sanping/protocol"
)

func benchRoom(b *testing.B, m *Manager, consultation int64) []*Member {
	b.Helper()
	r := m.Open(consultation)
	var members []*Member
	for _, in := range []Info{doctor, clinic, township} {
		mb, _, err := r.Join(context.Background(), in, "")
		if err != nil {
			b.Fatal(err)
		}
		members = append(members, mb)
	}
	return members
}

func benchConfig() Config {
	return Config{OpsPerSecond: 1 << 30, OpsBurst: 1 << 30, Logger: slog.New(slog.DiscardHandler)}
}

// One window op from the driver, applied and queued to three outboxes.
func BenchmarkOpBroadcast(b *testing.B) {
	b.Run("one room", func(b *testing.B) {
		m := NewManager(benchConfig())
		defer m.CloseAll("done")
		members := benchRoom(b, m, 1)
		msg := opMsg(1, windowOp(40, 400))
		b.ReportAllocs()
		for b.Loop() {
			if err := members[0].Handle(msg); err != nil {
				b.Fatal(err)
			}
			for _, mb := range members {
				<-mb.Outbox()
			}
		}
	})

	// 50 rooms, each with three members whose outboxes are drained as a websocket writer would;
	// the parallel goroutines send ops into the rooms round robin.
	b.Run("50 rooms parallel", func(b *testing.B) {
		cfg := benchConfig()
		cfg.OutboxSize = 1 << 16
		m := NewManager(cfg)
		const rooms = 50
		drivers := make([]*Member, rooms)
		var drained sync.WaitGroup
		var delivered atomic.Int64
		for i := range rooms {
			members := benchRoom(b, m, int64(i+1))
			drivers[i] = members[0]
			for _, mb := range members {
				drained.Go(func() {
					for range mb.Outbox() {
						delivered.Add(1)
					}
				})
			}
		}
		data, _ := json.Marshal(windowOp(40, 400))
		msg := protocol.Message{Type: protocol.TypeOp, ID: 1, Data: data}
		var next atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := drivers[next.Add(1)%rooms].Handle(msg); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		m.CloseAll("done")
		drained.Wait()
		// Every op reached all three members (the welcome-time events aside).
		if ops := delivered.Load(); ops < int64(3*b.N) {
			b.Fatalf("%d messages delivered for %d ops", ops, b.N)
		}
	})
}
