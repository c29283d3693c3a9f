package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// NewUser is what an admin gives to create an account.
type NewUser struct {
	Username      string   `json:"username"`
	DisplayName   string   `json:"displayName"`
	Phone         string   `json:"phone"`
	InstitutionID int64    `json:"institutionId"`
	DepartmentID  int64    `json:"departmentId"`
	Roles         []string `json:"roles"`
	// Doctors: professional title (主任医师, 副主任医师, 主治医师, ...), specialty and years of
	// independent practice; the telemedicine rules require a title and at least 3 years of an
	// invited doctor (checked when a consultation is accepted).
	Title         string `json:"title"`
	Specialty     string `json:"specialty"`
	PracticeYears int    `json:"practiceYears"`
}

// User is an account as admins see it.
type User struct {
	ID int64 `json:"id"`
	NewUser
	LockedUntil        time.Time `json:"lockedUntil,omitzero"` // zero when not locked
	FailedLogins       int       `json:"failedLogins"`
	MustChangePassword bool      `json:"mustChangePassword"`
	CreatedAt          time.Time `json:"createdAt"`
}

// Locked reports whether the account is locked now.
func (u *User) Locked(now time.Time) bool { return u.LockedUntil.After(now) }

var usernameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,31}$`)

// Roles holds the known role names.
var Roles = []string{RoleAdmin, RoleDoctor, RoleClinic}

// checkPasswordPolicy: length only (NIST SP 800-63B: at least 8, no composition rules).
func checkPasswordPolicy(pw string) error {
	n := utf8.RuneCountInString(pw)
	if n < 8 || n > 256 || !utf8.ValidString(pw) {
		return fmt.Errorf("%w: a password has 8 to 256 characters", ErrInvalid)
	}
	return nil
}

func oneLine(field, v string, maxRunes int, required bool) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" && required {
		return "", fmt.Errorf("%w: %s is required", ErrInvalid, field)
	}
	if !utf8.ValidString(v) || utf8.RuneCountInString(v) > maxRunes || strings.ContainsAny(v, "\x00\r\n") {
		return "", fmt.Errorf("%w: %s must be one line of at most %d characters", ErrInvalid, field, maxRunes)
	}
	return v, nil
}

// validate normalizes and checks u.
func (u *NewUser) validate() error {
	if !usernameRE.MatchString(u.Username) {
		return fmt.Errorf("%w: username must be 2-32 lowercase letters, digits, '.', '_' or '-'", ErrInvalid)
	}
	var err error
	if u.DisplayName, err = oneLine("displayName", u.DisplayName, 50, false); err != nil {
		return err
	}
	if u.Phone, err = oneLine("phone", u.Phone, 20, false); err != nil {
		return err
	}
	if strings.Trim(u.Phone, "+0123456789- ") != "" {
		return fmt.Errorf("%w: phone may hold digits, '+', '-' and spaces", ErrInvalid)
	}
	if u.Title, err = oneLine("title", u.Title, 30, false); err != nil {
		return err
	}
	if u.Specialty, err = oneLine("specialty", u.Specialty, 50, false); err != nil {
		return err
	}
	if u.PracticeYears < 0 || u.PracticeYears > 70 {
		return fmt.Errorf("%w: practiceYears must be between 0 and 70", ErrInvalid)
	}
	if len(u.Roles) == 0 {
		return fmt.Errorf("%w: a user needs at least one role (admin, doctor, clinic)", ErrInvalid)
	}
	var roles []string
	for _, r := range u.Roles {
		if !slices.Contains(Roles, r) {
			return fmt.Errorf("%w: unknown role %q (admin, doctor, clinic)", ErrInvalid, r)
		}
		if !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	u.Roles = roles
	if (u.HasRole(RoleDoctor) || u.HasRole(RoleClinic)) && u.InstitutionID == 0 {
		return fmt.Errorf("%w: doctors and clinic staff belong to an institution (institutionId)", ErrInvalid)
	}
	return nil
}

// HasRole reports whether role is among u's roles.
func (u *NewUser) HasRole(role string) bool { return slices.Contains(u.Roles, role) }

// AddUser creates an account. The institution must exist.
func (s *Service) AddUser(ctx context.Context, u NewUser, password string) (*User, error) {
	if err := checkPasswordPolicy(password); err != nil {
		return nil, err
	}
	return s.addUser(ctx, u, password)
}

func (s *Service) addUser(ctx context.Context, u NewUser, password string) (*User, error) {
	if err := u.validate(); err != nil {
		return nil, err
	}
	if err := s.checkInstitution(ctx, u.InstitutionID, u.DepartmentID); err != nil {
		return nil, err
	}
	now := s.now().UnixMilli()
	var id int64
	err := s.db.QueryRowContext(ctx, `INSERT INTO users (username, password_hash, roles, created_at, updated_at, display_name, phone,
		institution_id, department_id, title, specialty, practice_years) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING pk`,
		u.Username, HashPassword(password), strings.Join(u.Roles, ","), now, now, u.DisplayName, u.Phone,
		u.InstitutionID, u.DepartmentID, u.Title, u.Specialty, u.PracticeYears).Scan(&id)
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE") {
			return nil, fmt.Errorf("%w: user %s exists", ErrConflict, u.Username)
		}
		return nil, fmt.Errorf("adding user %s: %w", u.Username, err)
	}
	return s.User(ctx, id)
}

// checkInstitution makes sure an institution (and department of it) exists. The institutions
// table belongs to server/org; on a database without it only 0 is accepted.
func (s *Service) checkInstitution(ctx context.Context, id, department int64) error {
	if id == 0 {
		if department != 0 {
			return fmt.Errorf("%w: a department needs an institution", ErrInvalid)
		}
		return nil
	}
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM institutions WHERE id = ?`, id).Scan(&n)
	if err != nil || n == 0 {
		return fmt.Errorf("%w: institution %d does not exist", ErrInvalid, id)
	}
	if department != 0 {
		err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM departments WHERE id = ? AND institution_id = ?`, department, id).Scan(&n)
		if err != nil || n == 0 {
			return fmt.Errorf("%w: department %d is not in institution %d", ErrInvalid, department, id)
		}
	}
	return nil
}

const userCols = `pk, username, display_name, phone, institution_id, department_id, roles, title, specialty, practice_years,
	locked_until, failed_logins, must_change_password, created_at`

func scanUser(sc interface{ Scan(...any) error }) (*User, error) {
	var u User
	var roles string
	var locked, created int64
	var must int
	if err := sc.Scan(&u.ID, &u.Username, &u.DisplayName, &u.Phone, &u.InstitutionID, &u.DepartmentID, &roles, &u.Title,
		&u.Specialty, &u.PracticeYears, &locked, &u.FailedLogins, &must, &created); err != nil {
		return nil, err
	}
	u.Roles = splitRoles(roles)
	if locked > 0 {
		u.LockedUntil = time.UnixMilli(min(locked, maxTimeMillis)).UTC()
	}
	u.MustChangePassword = must != 0
	u.CreatedAt = time.UnixMilli(created).UTC()
	return &u, nil
}

// maxTimeMillis is year 9999: "locked by an admin" is stored as MaxInt64.
const maxTimeMillis = 253402300799000

func splitRoles(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// User returns one account.
func (s *Service) User(ctx context.Context, id int64) (*User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE pk = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("user %d: %w", id, ErrHidden)
	}
	if err != nil {
		return nil, fmt.Errorf("reading user %d: %w", id, err)
	}
	return u, nil
}

// UserByName returns one account by username.
func (s *Service) UserByName(ctx context.Context, username string) (*User, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT pk FROM users WHERE username = ?`, username).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("user %s: %w", username, ErrHidden)
	}
	if err != nil {
		return nil, fmt.Errorf("reading user %s: %w", username, err)
	}
	return s.User(ctx, id)
}

// UserFilter selects accounts for Users. Zero values do not filter.
type UserFilter struct {
	InstitutionID int64
	Role          string
}

// Users lists accounts.
func (s *Service) Users(ctx context.Context, f UserFilter) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userCols+` FROM users
		WHERE (?1 = 0 OR institution_id = ?1) AND (?2 = '' OR instr(','||roles||',', ','||?2||',') > 0) ORDER BY username`,
		f.InstitutionID, f.Role)
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("listing users: %w", err)
		}
		out = append(out, *u)
	}
	return out, rows.Err()
}

// UpdateUser replaces an account's profile (all NewUser fields but Username).
func (s *Service) UpdateUser(ctx context.Context, id int64, u NewUser) (*User, error) {
	old, err := s.User(ctx, id)
	if err != nil {
		return nil, err
	}
	u.Username = old.Username
	if err := u.validate(); err != nil {
		return nil, err
	}
	if err := s.checkInstitution(ctx, u.InstitutionID, u.DepartmentID); err != nil {
		return nil, err
	}
	_, err = s.db.ExecContext(ctx, `UPDATE users SET display_name = ?, phone = ?, institution_id = ?, department_id = ?, roles = ?,
		title = ?, specialty = ?, practice_years = ?, updated_at = ? WHERE pk = ?`,
		u.DisplayName, u.Phone, u.InstitutionID, u.DepartmentID, strings.Join(u.Roles, ","), u.Title, u.Specialty,
		u.PracticeYears, s.now().UnixMilli(), id)
	if err != nil {
		return nil, fmt.Errorf("updating user %d: %w", id, err)
	}
	s.forgetUser(id)
	return s.User(ctx, id)
}

// login checks a username and password from source (the client's address, or "reauth").
// After maxFailedLogins failures of one name from one source within lockDuration, that
// combination is held back (ErrThrottled) for lockDuration, whether or not the name exists:
// the answer is the same for both. An account an administrator locked answers ErrLocked, but
// only to the right password, so the lock tells a guesser nothing either.
func (s *Service) login(ctx context.Context, username, password, method, source string) (*Principal, error) {
	now := s.now()
	if s.failures.held(username, source, now) {
		return nil, ErrThrottled
	}
	var pk, lockedUntil int64
	var hash string
	err := s.db.QueryRowContext(ctx, `SELECT pk, password_hash, locked_until FROM users WHERE username = ?`,
		username).Scan(&pk, &hash, &lockedUntil)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("looking up user: %w", err)
	}
	s.passwordChecks.Add(1)
	if errors.Is(err, sql.ErrNoRows) {
		CheckPassword(s.dummyHash(), password) // same work whether or not the user exists
	}
	if errors.Is(err, sql.ErrNoRows) || !CheckPassword(hash, password) {
		if s.failures.fail(username, source, now) {
			return nil, ErrThrottledNow
		}
		return nil, ErrUnauthenticated
	}
	s.failures.succeed(username, source)
	if lockedUntil > now.UnixMilli() {
		return nil, ErrLocked
	}
	return s.principal(ctx, pk, method)
}

// principal builds the Principal of user pk.
func (s *Service) principal(ctx context.Context, pk int64, method string) (*Principal, error) {
	var p Principal
	var roles string
	var must int
	err := s.db.QueryRowContext(ctx, `SELECT u.pk, u.username, u.display_name, u.roles, u.institution_id, u.must_change_password,
		coalesce((SELECT code FROM institutions i WHERE i.id = u.institution_id), '') FROM users u WHERE u.pk = ?`, pk).
		Scan(&p.UserID, &p.Username, &p.DisplayName, &roles, &p.InstitutionID, &must, &p.InstitutionCode)
	if err != nil && strings.Contains(err.Error(), "no such table") {
		// Without server/org's tables (auth's own tests) there are no institution codes.
		err = s.db.QueryRowContext(ctx, `SELECT pk, username, display_name, roles, institution_id, must_change_password FROM users WHERE pk = ?`, pk).
			Scan(&p.UserID, &p.Username, &p.DisplayName, &roles, &p.InstitutionID, &must)
	}
	if err != nil {
		return nil, fmt.Errorf("reading user %d: %w", pk, err)
	}
	p.Roles = splitRoles(roles)
	p.MustChangePassword = must != 0
	p.Method = method
	return &p, nil
}

// VerifyPassword re-checks a signed-in user's password (signing a report asks for it again).
// Failures are held back like failed logins, under the source "reauth".
func (s *Service) VerifyPassword(ctx context.Context, userID int64, password string) error {
	var username string
	if err := s.db.QueryRowContext(ctx, `SELECT username FROM users WHERE pk = ?`, userID).Scan(&username); err != nil {
		return ErrUnauthenticated
	}
	_, err := s.login(ctx, username, password, "reauth", "reauth")
	return err
}

// SetPassword replaces a user's password (admin reset) and clears a lockout. With
// mustChange, the user has to choose a new password at the next login.
func (s *Service) SetPassword(ctx context.Context, username, password string, mustChange bool) error {
	if err := checkPasswordPolicy(password); err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = 0,
		must_change_password = ?, updated_at = ? WHERE username = ?`,
		HashPassword(password), mustChange, s.now().UnixMilli(), username)
	if err != nil {
		return fmt.Errorf("setting the password of %s: %w", username, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("setting the password of %s: %w", username, ErrHidden)
	}
	s.forgetName(username)
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE user_pk = (SELECT pk FROM users WHERE username = ?)`, username); err != nil {
		return fmt.Errorf("ending sessions of %s: %w", username, err)
	}
	return nil
}

// ChangePassword is a user changing their own password: the current one is checked first.
// Other sessions of the user end; keep is the session that stays (the caller's).
func (s *Service) ChangePassword(ctx context.Context, userID int64, current, next, keepSession string) error {
	if err := s.VerifyPassword(ctx, userID, current); err != nil {
		return err
	}
	if err := checkPasswordPolicy(next); err != nil {
		return err
	}
	if current == next {
		return fmt.Errorf("%w: the new password must differ from the current one", ErrInvalid)
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE users SET password_hash = ?, must_change_password = 0, updated_at = ? WHERE pk = ?`,
		HashPassword(next), s.now().UnixMilli(), userID); err != nil {
		return fmt.Errorf("changing password: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE user_pk = ? AND id_hash != ?`, userID, hashSecret(keepSession)); err != nil {
		return fmt.Errorf("ending other sessions: %w", err)
	}
	s.forgetUser(userID)
	return nil
}

// Unlock clears an administrator's lock and any hold after failed sign-ins.
func (s *Service) Unlock(ctx context.Context, username string) error {
	s.failures.clear(username)
	res, err := s.db.ExecContext(ctx, `UPDATE users SET failed_logins = 0, locked_until = 0 WHERE username = ?`, username)
	if err != nil {
		return fmt.Errorf("unlocking %s: %w", username, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("unlocking %s: %w", username, ErrHidden)
	}
	return nil
}

// Lock locks an account until an admin unlocks it, and ends its sessions.
func (s *Service) Lock(ctx context.Context, username string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET locked_until = ? WHERE username = ?`, int64(math.MaxInt64), username)
	if err != nil {
		return fmt.Errorf("locking %s: %w", username, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("locking %s: %w", username, ErrHidden)
	}
	s.forgetName(username)
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE user_pk = (SELECT pk FROM users WHERE username = ?)`, username); err != nil {
		return fmt.Errorf("ending sessions of %s: %w", username, err)
	}
	return nil
}

// forgetName and forgetUser drop a user's cached Basic credentials.
func (s *Service) forgetName(username string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, c := range s.cache {
		if c.p.Username == username {
			delete(s.cache, k)
		}
	}
}

func (s *Service) forgetUser(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, c := range s.cache {
		if c.p.UserID == id {
			delete(s.cache, k)
		}
	}
}
