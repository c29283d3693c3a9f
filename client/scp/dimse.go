package scp

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// Command set elements, PS3.7 section E.1 (group 0000, always implicit VR little endian).
const (
	tagCommandGroupLength        = 0x00000000
	tagAffectedSOPClassUID       = 0x00000002
	tagCommandField              = 0x00000100
	tagMessageID                 = 0x00000110
	tagMessageIDBeingRespondedTo = 0x00000120
	tagCommandDataSetType        = 0x00000800
	tagStatus                    = 0x00000900
	tagErrorComment              = 0x00000902
	tagAffectedSOPInstanceUID    = 0x00001000
)

// Command Field values, PS3.7 section E.1.
const (
	cStoreRQ  = 0x0001
	cEchoRQ   = 0x0030
	cCancelRQ = 0x0FFF
	response  = 0x8000
)

// noDataSet is the Command Data Set Type meaning no data set follows.
const noDataSet = 0x0101

// DIMSE status codes, PS3.7 annex C and section 9.1.1.1.9.
const (
	statusSuccess               = 0x0000
	statusUnrecognizedOperation = 0x0211
	statusOutOfResources        = 0xA700
	statusCannotUnderstand      = 0xC000
)

// maxCommandSet bounds a reassembled command set; real ones are a few hundred bytes.
const maxCommandSet = 1 << 16

type command struct {
	Field          uint16
	MessageID      uint16
	DataSetType    uint16
	SOPClass       string
	SOPInstance    string
	hasDataSetType bool
}

func (c command) hasDataSet() bool { return c.hasDataSetType && c.DataSetType != noDataSet }

// parseCommand decodes a command set; elements it does not need are skipped.
func parseCommand(b []byte) (command, error) {
	var c command
	var haveField bool
	for len(b) > 0 {
		if len(b) < 8 {
			return c, protoErr(abortInvalidParamValue, "truncated command element")
		}
		tag := uint32(binary.LittleEndian.Uint16(b))<<16 | uint32(binary.LittleEndian.Uint16(b[2:]))
		n := binary.LittleEndian.Uint32(b[4:])
		if uint64(n) > uint64(len(b)-8) {
			return c, protoErr(abortInvalidParamValue, "command element %08X length %d", tag, n)
		}
		v := b[8 : 8+n]
		b = b[8+n:]
		switch tag {
		case tagAffectedSOPClassUID:
			c.SOPClass = trimUID(v)
		case tagAffectedSOPInstanceUID:
			c.SOPInstance = trimUID(v)
		case tagCommandField, tagMessageID, tagCommandDataSetType:
			if n != 2 {
				return c, protoErr(abortInvalidParamValue, "command element %08X length %d", tag, n)
			}
			u := binary.LittleEndian.Uint16(v)
			switch tag {
			case tagCommandField:
				c.Field, haveField = u, true
			case tagMessageID:
				c.MessageID = u
			default:
				c.DataSetType, c.hasDataSetType = u, true
			}
		}
	}
	if !haveField || !c.hasDataSetType {
		return c, protoErr(abortInvalidParamValue, "command set without Command Field or Command Data Set Type")
	}
	return c, nil
}

// commandElement is one element of a command set being written.
type commandElement struct {
	tag   uint32
	value []byte
}

func uidValue(uid string) []byte {
	v := []byte(uid)
	if len(v)%2 == 1 {
		v = append(v, 0)
	}
	return v
}

func u16Value(u uint16) []byte { return binary.LittleEndian.AppendUint16(nil, u) }

// encodeCommand writes a command set with its group length, elements in tag order.
func encodeCommand(elems []commandElement) []byte {
	slices.SortFunc(elems, func(a, b commandElement) int { return int(a.tag) - int(b.tag) })
	var body []byte
	for _, e := range elems {
		body = binary.LittleEndian.AppendUint16(body, uint16(e.tag>>16))
		body = binary.LittleEndian.AppendUint16(body, uint16(e.tag))
		body = binary.LittleEndian.AppendUint32(body, uint32(len(e.value)))
		body = append(body, e.value...)
	}
	out := make([]byte, 0, 12+len(body))
	out = append(out, 0, 0, 0, 0, 4, 0, 0, 0)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(body)))
	return append(out, body...)
}

// responseTo builds the response to rq with the given status; comment goes in Error Comment.
func responseTo(rq command, status uint16, comment string) []byte {
	elems := []commandElement{
		{tagCommandField, u16Value(rq.Field | response)},
		{tagMessageIDBeingRespondedTo, u16Value(rq.MessageID)},
		{tagCommandDataSetType, u16Value(noDataSet)},
		{tagStatus, u16Value(status)},
	}
	if rq.SOPClass != "" {
		elems = append(elems, commandElement{tagAffectedSOPClassUID, uidValue(rq.SOPClass)})
	}
	if rq.SOPInstance != "" && rq.Field == cStoreRQ {
		elems = append(elems, commandElement{tagAffectedSOPInstanceUID, uidValue(rq.SOPInstance)})
	}
	if comment != "" && status != statusSuccess {
		if len(comment) > 64 { // Error Comment is LO
			comment = comment[:64]
		}
		if len(comment)%2 == 1 {
			comment += " "
		}
		elems = append(elems, commandElement{tagErrorComment, []byte(comment)})
	}
	return encodeCommand(elems)
}

func (c command) String() string {
	return fmt.Sprintf("command 0x%04x id %d", c.Field, c.MessageID)
}
