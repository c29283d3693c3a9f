package room

import (
	"slices"

	"github.com/sanping/sanping/protocol"
)

// Control actions.
const (
	actionRequest = "request"
	actionCancel  = "cancel"
	actionGive    = "give"
	actionRelease = "release"
	actionTake    = "take"
)

func (r *Room) control(mb *Member, c protocol.Control) error {
	p := mb.p
	switch c.Action {
	case actionRequest:
		if r.driver == p || slices.Contains(r.requests, p) {
			return nil
		}
		r.requests = append(r.requests, p)
		r.broadcast(protocol.TypeControlled, r.controlState(), nil)
		r.event(p, "live.control", "requested control")
	case actionCancel:
		i := slices.Index(r.requests, p)
		if i < 0 {
			return nil
		}
		r.requests = slices.Delete(r.requests, i, i+1)
		r.broadcast(protocol.TypeControlled, r.controlState(), nil)
		r.event(p, "live.control", "cancelled the request")
	case actionGive:
		if r.driver != p {
			return refuse(protocol.ErrNotDriver, "only the driver gives control")
		}
		to := r.find(c.To)
		if to == nil || to.conn == nil {
			return refuse(protocol.ErrNotFound, "no connected participant %q", c.To)
		}
		if to != p {
			r.setDriver(to, p, true, nil)
		}
	case actionRelease:
		if r.driver != p {
			return refuse(protocol.ErrNotDriver, "only the driver releases control")
		}
		r.given = false
		if d := r.defaultDriver(); d != nil && d != p {
			r.setDriver(d, p, false, nil)
		}
	case actionTake:
		if !p.info.CanTake {
			return refuse(protocol.ErrForbidden, "only the assigned doctor or an admin takes control; request it")
		}
		if r.driver != p {
			r.setDriver(p, p, true, nil)
		}
		r.given = true
	default:
		return refuse(protocol.ErrInvalid, "unknown control action %q", c.Action)
	}
	return nil
}

// setDriver seats to (nil: nobody), because of by, and tells everyone but except.
func (r *Room) setDriver(to, by *participant, given bool, except *Member) {
	from := r.driver
	r.driver, r.given = to, given
	r.requests = slices.DeleteFunc(r.requests, func(q *participant) bool { return q == to })
	r.broadcast(protocol.TypeControlled, r.controlState(), except)
	if from != to {
		r.event(by, "live.control", "from "+label(from)+" to "+label(to))
	}
}

// defaultDriver is the first connected participant with DefaultDriver.
func (r *Room) defaultDriver() *participant {
	for _, p := range r.members {
		if p.info.DefaultDriver && p.conn != nil {
			return p
		}
	}
	return nil
}

// successor takes the seat of a driver who left: the default driver, else whoever has been
// connected in the room longest.
func (r *Room) successor() *participant {
	if d := r.defaultDriver(); d != nil {
		return d
	}
	for _, p := range r.members {
		if p.conn != nil {
			return p
		}
	}
	return nil
}

func (r *Room) controlState() protocol.ControlState {
	s := protocol.ControlState{Requests: make([]string, 0, len(r.requests))}
	if r.driver != nil {
		s.Driver = r.driver.id
	}
	for _, p := range r.requests {
		s.Requests = append(s.Requests, p.id)
	}
	return s
}

func label(p *participant) string {
	if p == nil {
		return "nobody"
	}
	if p.info.Name == "" {
		return p.id
	}
	return p.info.Name + " (" + p.id + ")"
}
