package dicomweb

import (
	"encoding/json"
	"sort"

	"github.com/sanping/sanping/server/dcm"
)

// object builds one DICOM JSON object (PS3.18 F.2) for responses the server composes itself
// (QIDO results, STOW answers). Attributes come out in tag order.
type object struct {
	attrs map[string]json.RawMessage
}

func newObject() *object { return &object{attrs: map[string]json.RawMessage{}} }

type attr struct {
	VR           string `json:"vr"`
	Value        []any  `json:"Value,omitempty"`
	InlineBinary string `json:"InlineBinary,omitempty"`
}

func (o *object) set(tag string, a attr) {
	b, _ := json.Marshal(a)
	o.attrs[tag] = b
}

// raw sets an attribute from an already encoded DICOM JSON value (from stored metadata).
func (o *object) raw(tag string, v json.RawMessage) { o.attrs[tag] = v }

func (o *object) has(tag string) bool { _, ok := o.attrs[tag]; return ok }

// str sets a string attribute; an empty value gives an attribute with no Value, which PS3.18
// asks for when a required return key has no value.
func (o *object) str(tag, vr string, vals ...string) {
	a := attr{VR: vr}
	for _, v := range vals {
		if v != "" {
			a.Value = append(a.Value, v)
		}
	}
	o.set(tag, a)
}

func (o *object) ints(tag, vr string, vals ...int) {
	a := attr{VR: vr}
	for _, v := range vals {
		a.Value = append(a.Value, v)
	}
	o.set(tag, a)
}

// nullInt sets an integer attribute that may be absent in the index.
func (o *object) nullInt(tag, vr string, v int64, valid bool) {
	if !valid {
		o.set(tag, attr{VR: vr})
		return
	}
	o.set(tag, attr{VR: vr, Value: []any{v}})
}

func (o *object) pn(tag, v string) {
	if v == "" {
		o.set(tag, attr{VR: "PN"})
		return
	}
	p := dcm.SplitPersonName(v)
	m := map[string]string{"Alphabetic": p.Alphabetic}
	if p.Ideographic != "" {
		m["Ideographic"] = p.Ideographic
	}
	if p.Phonetic != "" {
		m["Phonetic"] = p.Phonetic
	}
	if p.Alphabetic == "" {
		delete(m, "Alphabetic")
	}
	o.set(tag, attr{VR: "PN", Value: []any{m}})
}

func (o *object) seq(tag string, items []*object) {
	vals := make([]any, len(items))
	for i, it := range items {
		vals[i] = json.RawMessage(it.encode())
	}
	o.set(tag, attr{VR: "SQ", Value: vals})
}

func (o *object) encode() []byte {
	keys := make([]string, 0, len(o.attrs))
	for k := range o.attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, '"', ':')
		b = append(b, o.attrs[k]...)
	}
	return append(b, '}')
}
