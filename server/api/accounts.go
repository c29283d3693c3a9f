package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/org"
)

// sessionView is the signed-in caller as the browser app sees it.
type sessionView struct {
	User      principalView `json:"user"`
	CSRFToken string        `json:"csrfToken,omitempty"`
}

type principalView struct {
	ID                 int64    `json:"id,omitempty"`
	Username           string   `json:"username"`
	DisplayName        string   `json:"displayName"`
	Roles              []string `json:"roles"`
	InstitutionID      int64    `json:"institutionId,omitempty"`
	InstitutionCode    string   `json:"institutionCode,omitempty"`
	Method             string   `json:"method"`
	MustChangePassword bool     `json:"mustChangePassword"`
}

func viewOf(p *auth.Principal) principalView {
	return principalView{ID: p.UserID, Username: p.Username, DisplayName: p.DisplayName, Roles: p.Roles,
		InstitutionID: p.InstitutionID, InstitutionCode: p.InstitutionCode, Method: p.Method, MustChangePassword: p.MustChangePassword}
}

func (s *Service) login(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := decode(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	p, csrf, err := s.auth.Login(w, r, in.Username, in.Password)
	if err != nil {
		if errors.Is(err, auth.ErrLocked) || errors.Is(err, auth.ErrThrottled) || errors.Is(err, auth.ErrRateLimited) || !errors.Is(err, auth.ErrUnauthenticated) {
			s.auth.WriteError(w, r, err, false)
			return
		}
		auth.WriteProblem(w, http.StatusUnauthorized, "wrong username or password")
		return
	}
	writeJSON(w, http.StatusOK, sessionView{User: viewOf(p), CSRFToken: csrf})
}

func (s *Service) logout(w http.ResponseWriter, r *http.Request) {
	if err := s.auth.Logout(w, r); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) session(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	v := sessionView{User: viewOf(p)}
	if p.Method == "session" {
		csrf, err := s.auth.CSRFToken(r.Context(), r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		v.CSRFToken = csrf
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Service) changePassword(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Current string `json:"currentPassword"`
		New     string `json:"newPassword"`
	}
	if err := decode(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	p := principal(r)
	if p.UserID == 0 {
		auth.WriteProblem(w, http.StatusForbidden, "API tokens have no password")
		return
	}
	err := s.auth.ChangePassword(r.Context(), p.UserID, in.Current, in.New, s.auth.SessionSecret(r))
	if errors.Is(err, auth.ErrUnauthenticated) {
		auth.WriteProblem(w, http.StatusForbidden, "the current password is not correct")
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.record(r, "user.password.change", "user:"+p.Username, "")
	w.WriteHeader(http.StatusNoContent)
}

// Institutions.

func (s *Service) listInstitutions(w http.ResponseWriter, r *http.Request) {
	list, err := s.org.List(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(list))
}

func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}

func (s *Service) addInstitution(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ParentID int64    `json:"parentId"`
		Code     string   `json:"code"`
		Name     string   `json:"name"`
		Kind     org.Kind `json:"kind"`
	}
	if err := decode(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	inst, err := s.org.Add(r.Context(), org.Institution{ParentID: in.ParentID, Code: in.Code, Name: in.Name, Kind: in.Kind})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.record(r, "institution.create", fmt.Sprintf("institution:%d", inst.ID), fmt.Sprintf("code=%s kind=%s name=%s parent=%d", inst.Code, inst.Kind, inst.Name, inst.ParentID))
	writeJSON(w, http.StatusCreated, inst)
}

func (s *Service) getInstitution(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "iid")
	if err == nil {
		var inst *org.Institution
		if inst, err = s.org.Get(r.Context(), id); err == nil {
			writeJSON(w, http.StatusOK, inst)
			return
		}
	}
	s.fail(w, r, err)
}

func (s *Service) renameInstitution(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "iid")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var in struct {
		Name string `json:"name"`
	}
	if err := decode(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	inst, err := s.org.Rename(r.Context(), id, in.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.record(r, "institution.update", fmt.Sprintf("institution:%d", id), "name="+inst.Name)
	writeJSON(w, http.StatusOK, inst)
}

func (s *Service) addDepartment(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "iid")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var in struct {
		Name string `json:"name"`
	}
	if err := decode(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	d, err := s.org.AddDepartment(r.Context(), id, in.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.record(r, "institution.department.create", fmt.Sprintf("institution:%d", id), "name="+d.Name)
	writeJSON(w, http.StatusCreated, d)
}

func (s *Service) listStations(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "iid")
	if err == nil {
		_, err = s.org.Get(r.Context(), id)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list, err := s.org.Stations(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(list))
}

func (s *Service) addStation(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "iid")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var in struct {
		Name     string `json:"name"`
		AETitle  string `json:"aeTitle"`
		Modality string `json:"modality"`
	}
	if err := decode(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := s.org.AddStation(r.Context(), org.Station{InstitutionID: id, Name: in.Name, AETitle: in.AETitle, Modality: in.Modality})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.record(r, "institution.station.create", fmt.Sprintf("institution:%d", id), "name="+st.Name)
	writeJSON(w, http.StatusCreated, st)
}

// doctorView is a doctor as anyone signed in may see: enough to choose whom to ask.
type doctorView struct {
	ID            int64  `json:"id"`
	DisplayName   string `json:"displayName"`
	Title         string `json:"title"`
	Specialty     string `json:"specialty"`
	PracticeYears int    `json:"practiceYears"`
	InstitutionID int64  `json:"institutionId"`
	// Qualified: a title and at least 3 years of independent practice, as the telemedicine
	// rules require of an invited doctor.
	Qualified bool `json:"qualified"`
}

func (s *Service) listDoctors(w http.ResponseWriter, r *http.Request) {
	inst, err := queryInt(r, "institutionId")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	users, err := s.auth.Users(r.Context(), auth.UserFilter{InstitutionID: inst, Role: auth.RoleDoctor})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	specialty := r.URL.Query().Get("specialty")
	out := []doctorView{}
	for _, u := range users {
		if specialty != "" && u.Specialty != specialty {
			continue
		}
		out = append(out, doctorView{ID: u.ID, DisplayName: u.DisplayName, Title: u.Title, Specialty: u.Specialty,
			PracticeYears: u.PracticeYears, InstitutionID: u.InstitutionID, Qualified: u.Title != "" && u.PracticeYears >= 3})
	}
	writeJSON(w, http.StatusOK, out)
}

// Users (admins).

func (s *Service) listUsers(w http.ResponseWriter, r *http.Request) {
	inst, err := queryInt(r, "institutionId")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	users, err := s.auth.Users(r.Context(), auth.UserFilter{InstitutionID: inst, Role: r.URL.Query().Get("role")})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(users))
}

func (s *Service) addUser(w http.ResponseWriter, r *http.Request) {
	var in struct {
		auth.NewUser
		Password string `json:"password"`
	}
	if err := decode(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	u, err := s.auth.AddUser(r.Context(), in.NewUser, in.Password)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// A password chosen by an admin is the admin's: the user replaces it at first login.
	if err := s.auth.SetPassword(r.Context(), u.Username, in.Password, true); err != nil {
		s.fail(w, r, err)
		return
	}
	u.MustChangePassword = true
	s.record(r, "user.create", "user:"+u.Username, userDetail(u))
	writeJSON(w, http.StatusCreated, u)
}

func userDetail(u *auth.User) string {
	return fmt.Sprintf("roles=%v institution=%d title=%s practiceYears=%d", u.Roles, u.InstitutionID, u.Title, u.PracticeYears)
}

func (s *Service) getUser(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "uid")
	if err == nil {
		var u *auth.User
		if u, err = s.auth.User(r.Context(), id); err == nil {
			writeJSON(w, http.StatusOK, u)
			return
		}
	}
	s.fail(w, r, err)
}

func (s *Service) updateUser(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "uid")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var in auth.NewUser
	if err := decode(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	old, err := s.auth.User(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if in.Username != "" && in.Username != old.Username {
		s.fail(w, r, fmt.Errorf("%w: a username cannot change", auth.ErrInvalid))
		return
	}
	if p := principal(r); p.UserID == id && old.HasRole(auth.RoleAdmin) && !in.HasRole(auth.RoleAdmin) {
		s.fail(w, r, fmt.Errorf("%w: admins cannot remove their own admin role", auth.ErrConflict))
		return
	}
	u, err := s.auth.UpdateUser(r.Context(), id, in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.record(r, "user.update", "user:"+u.Username, "before: "+userDetail(old)+"; after: "+userDetail(u))
	writeJSON(w, http.StatusOK, u)
}

func (s *Service) userArg(w http.ResponseWriter, r *http.Request) (*auth.User, bool) {
	id, err := pathID(r, "uid")
	var u *auth.User
	if err == nil {
		u, err = s.auth.User(r.Context(), id)
	}
	if err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	return u, true
}

func (s *Service) resetPassword(w http.ResponseWriter, r *http.Request) {
	u, ok := s.userArg(w, r)
	if !ok {
		return
	}
	var in struct {
		Password string `json:"password"`
	}
	if err := decode(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.auth.SetPassword(r.Context(), u.Username, in.Password, true); err != nil {
		s.fail(w, r, err)
		return
	}
	s.record(r, "user.password.reset", "user:"+u.Username, "the user must change it at next login")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) lockUser(w http.ResponseWriter, r *http.Request) {
	u, ok := s.userArg(w, r)
	if !ok {
		return
	}
	if p := principal(r); p.UserID == u.ID {
		s.fail(w, r, fmt.Errorf("%w: admins cannot lock themselves out", auth.ErrConflict))
		return
	}
	if err := s.auth.Lock(r.Context(), u.Username); err != nil {
		s.fail(w, r, err)
		return
	}
	s.record(r, "user.lock", "user:"+u.Username, "")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) unlockUser(w http.ResponseWriter, r *http.Request) {
	u, ok := s.userArg(w, r)
	if !ok {
		return
	}
	if err := s.auth.Unlock(r.Context(), u.Username); err != nil {
		s.fail(w, r, err)
		return
	}
	s.record(r, "user.unlock", "user:"+u.Username, "")
	w.WriteHeader(http.StatusNoContent)
}

// Tokens (admins).

func (s *Service) listTokens(w http.ResponseWriter, r *http.Request) {
	list, err := s.auth.Tokens(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for i := range list {
		if list[i].LastUpload, err = s.lastUpload(r.Context(), list[i]); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, nonNil(list))
}

func (s *Service) createToken(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name          string `json:"name"`
		InstitutionID int64  `json:"institutionId"`
		Role          string `json:"role"`
	}
	if err := decode(w, r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	t, secret, err := s.auth.CreateToken(r.Context(), in.Name, in.InstitutionID, in.Role, principal(r).Username)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.record(r, "token.create", "token:"+strconv.FormatInt(t.ID, 10), fmt.Sprintf("name=%s role=%s institution=%d", t.Name, t.Role, t.InstitutionID))
	writeJSON(w, http.StatusCreated, struct {
		*auth.Token
		Secret string `json:"secret"`
	}{t, secret})
}

func (s *Service) revokeToken(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "tid")
	var t *auth.Token
	if err == nil {
		t, err = s.auth.RevokeToken(r.Context(), id)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.record(r, "token.revoke", "token:"+strconv.FormatInt(t.ID, 10), "name="+t.Name)
	writeJSON(w, http.StatusOK, t)
}
