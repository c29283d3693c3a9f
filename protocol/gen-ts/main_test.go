package main

import (
	"bytes"
	"os"
	"testing"
)

const committed = "../../web/src/live/protocol.ts"

// TestCommittedFileIsCurrent fails when protocol/*.go changed and web/src/live/protocol.ts was
// not regenerated: the browser app would speak an older protocol than the server.
func TestCommittedFileIsCurrent(t *testing.T) {
	want, err := Generate("..")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(committed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date with protocol/*.go: run `go run ./protocol/gen-ts` from the repository root and commit it", committed)
	}
}

// TestGenerated: what the generator makes of a few declarations it must get right.
func TestGenerated(t *testing.T) {
	src, err := Generate("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"export const Version = 1;",
		"export const TypeHello = 'hello';",
		"export const TypeOpApplied = 'op.applied';",
		"export const MaxMessageBytes = 65536;",
		"export const AnnotationKinds = ['line', 'arrow', 'rect', 'ellipse', 'polyline', 'text', 'length', 'angle'] as const;",
		"export interface ProtocolError {",
		"  resume?: string;",                         // omitempty
		"  candidate?: ICECandidate;",                // pointer
		"  annotations: Record<string, Annotation>;", // map
		"  joinedAt: string;",                        // time.Time
		"  data?: unknown;",                          // json.RawMessage
		"  [TypeHello]: Hello;",
		"  [TypeLeave]: undefined;",
		"  [TypeError]: ProtocolError;",
		"  | typeof OpAnnotationAdd",
	} {
		if !bytes.Contains(src, []byte(want)) {
			t.Errorf("generated TypeScript lacks %q", want)
		}
	}
}
