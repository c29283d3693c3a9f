package server

import (
	"bufio"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/sanping/sanping/server/audit"
	"github.com/sanping/sanping/server/auth"
	"github.com/sanping/sanping/server/org"
	"github.com/sanping/sanping/server/store"
)

// The admin CLI works on the data directory, so a county IT person can bootstrap without the
// UI: `sanping user ...`, `sanping site ...`, `sanping token ...`. Passwords are read from standard
// input (one line), never from the command line where other users of the machine could see
// them. Every change is written to the audit trail with actor "cli".

// cliEnv is what every admin command opens.
type cliEnv struct {
	db    *sql.DB
	org   *org.Service
	auth  *auth.Service
	trail *audit.Log
}

func openCLI(ctx context.Context, dataDir string) (*cliEnv, error) {
	// Setting up a county starts on a machine where the server has not run yet: the data
	// directory is made here as serve makes it.
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	db, err := store.OpenDB(filepath.Join(dataDir, "index.db"))
	if err != nil {
		return nil, err
	}
	e := &cliEnv{db: db}
	if e.trail, err = audit.Open(ctx, db, nil); err == nil {
		if e.org, err = org.New(ctx, db); err == nil {
			e.auth, err = auth.New(ctx, db, nil)
		}
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return e, nil
}

func (e *cliEnv) record(ctx context.Context, action, object, detail string) error {
	_, err := e.trail.Append(ctx, audit.Entry{Actor: "cli", Role: "admin", Action: action, Object: object, Outcome: "success", Detail: detail})
	if err != nil {
		return fmt.Errorf("the change is made but the audit entry was not written: %w", err)
	}
	return nil
}

// institution resolves an institution given by code or ID ("" is none).
func (e *cliEnv) institution(ctx context.Context, ref string) (*org.Institution, error) {
	if ref == "" {
		return nil, nil
	}
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		return e.org.Get(ctx, id)
	}
	return e.org.ByCode(ctx, ref)
}

func readPassword(stdin io.Reader, stdout io.Writer, name string) (string, error) {
	fmt.Fprintf(stdout, "password for %s (one line on standard input): ", name)
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	fmt.Fprintln(stdout)
	return strings.TrimRight(line, "\r\n"), nil
}

// userCommand is `sanping user add|list|passwd|lock|unlock`.
func userCommand(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: sanping user add|list|passwd|lock|unlock [-data DIR] [flags] [NAME]")
	}
	verb := args[0]
	fl := flag.NewFlagSet("user "+verb, flag.ContinueOnError)
	dataDir := fl.String("data", envOr("SANPING_DATA", "./data"), "data directory")
	roles := fl.String("roles", auth.RoleClinic, "add: roles, comma-separated: admin, doctor, clinic")
	inst := fl.String("institution", "", "add: institution code or ID (required for doctor and clinic)")
	display := fl.String("name", "", "add: display name, e.g. 韦东平")
	phone := fl.String("phone", "", "add: phone number")
	title := fl.String("title", "", "add: doctor's professional title, e.g. 主治医师")
	specialty := fl.String("specialty", "", "add: doctor's specialty, e.g. 放射科")
	years := fl.Int("years", 0, "add: doctor's years of independent practice")
	temporary := fl.Bool("temporary", false, "passwd: the user must change the password at next login")
	if err := fl.Parse(args[1:]); err != nil {
		return err
	}
	name := fl.Arg(0)
	if verb != "list" && name == "" {
		return fmt.Errorf("user %s: a user name is required", verb)
	}
	e, err := openCLI(ctx, *dataDir)
	if err != nil {
		return err
	}
	defer e.db.Close()
	switch verb {
	case "add":
		in, err := e.institution(ctx, *inst)
		if err != nil {
			return err
		}
		nu := auth.NewUser{Username: name, DisplayName: *display, Phone: *phone, Roles: strings.Split(*roles, ","),
			Title: *title, Specialty: *specialty, PracticeYears: *years}
		if in != nil {
			nu.InstitutionID = in.ID
		}
		pw, err := readPassword(stdin, stdout, name)
		if err != nil {
			return err
		}
		u, err := e.auth.AddUser(ctx, nu, pw)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s added (id %d) with roles %s\n", u.Username, u.ID, strings.Join(u.Roles, ","))
		return e.record(ctx, "user.create", "user:"+u.Username, userCLIDetail(u))
	case "passwd":
		pw, err := readPassword(stdin, stdout, name)
		if err != nil {
			return err
		}
		if err := e.auth.SetPassword(ctx, name, pw, *temporary); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "password of %s changed\n", name)
		return e.record(ctx, "user.password.reset", "user:"+name, fmt.Sprintf("must change: %v", *temporary))
	case "lock":
		if err := e.auth.Lock(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s locked\n", name)
		return e.record(ctx, "user.lock", "user:"+name, "")
	case "unlock":
		if err := e.auth.Unlock(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s unlocked\n", name)
		return e.record(ctx, "user.unlock", "user:"+name, "")
	case "list":
		users, err := e.auth.Users(ctx, auth.UserFilter{})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tUSERNAME\tNAME\tROLES\tINSTITUTION\tTITLE\tSTATE")
		for _, u := range users {
			state := "active"
			if !u.LockedUntil.IsZero() {
				state = "locked until " + u.LockedUntil.Format("2006-01-02 15:04 MST")
				if u.LockedUntil.Year() > 9000 {
					state = "locked by an admin"
				}
			}
			if u.MustChangePassword {
				state += ", must change password"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", u.ID, u.Username, u.DisplayName, strings.Join(u.Roles, ","), u.InstitutionID, u.Title, state)
		}
		return tw.Flush()
	}
	return fmt.Errorf("user %s: unknown; use add, list, passwd, lock or unlock", verb)
}

func userCLIDetail(u *auth.User) string {
	return fmt.Sprintf("roles=%v institution=%d title=%s practiceYears=%d", u.Roles, u.InstitutionID, u.Title, u.PracticeYears)
}

// siteCommand is `sanping site add|list`: institutions.
func siteCommand(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: sanping site add -kind hospital|township|clinic [-parent CODE] [-data DIR] CODE NAME | sanping site list")
	}
	verb := args[0]
	fl := flag.NewFlagSet("site "+verb, flag.ContinueOnError)
	dataDir := fl.String("data", envOr("SANPING_DATA", "./data"), "data directory")
	kind := fl.String("kind", "clinic", "add: hospital, township or clinic")
	parent := fl.String("parent", "", "add: code or ID of the parent institution (townships and clinics)")
	department := fl.String("department", "", "add: comma-separated departments of a hospital, e.g. 放射科,超声科")
	if err := fl.Parse(args[1:]); err != nil {
		return err
	}
	e, err := openCLI(ctx, *dataDir)
	if err != nil {
		return err
	}
	defer e.db.Close()
	switch verb {
	case "add":
		if fl.NArg() != 2 {
			return fmt.Errorf("site add: CODE and NAME are required")
		}
		in := org.Institution{Code: fl.Arg(0), Name: fl.Arg(1), Kind: org.Kind(*kind)}
		p, err := e.institution(ctx, *parent)
		if err != nil {
			return err
		}
		if p != nil {
			in.ParentID = p.ID
		}
		got, err := e.org.Add(ctx, in)
		if err != nil {
			return err
		}
		if err := e.record(ctx, "institution.create", fmt.Sprintf("institution:%d", got.ID), fmt.Sprintf("code=%s kind=%s name=%s parent=%d", got.Code, got.Kind, got.Name, got.ParentID)); err != nil {
			return err
		}
		for _, d := range strings.Split(*department, ",") {
			if d = strings.TrimSpace(d); d == "" {
				continue
			}
			if _, err := e.org.AddDepartment(ctx, got.ID, d); err != nil {
				return err
			}
			if err := e.record(ctx, "institution.department.create", fmt.Sprintf("institution:%d", got.ID), "name="+d); err != nil {
				return err
			}
		}
		fmt.Fprintf(stdout, "institution %s added (id %d)\n", got.Code, got.ID)
		return nil
	case "list":
		list, err := e.org.List(ctx)
		if err != nil {
			return err
		}
		depth := map[int64]int{}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tCODE\tKIND\tNAME\tDEPARTMENTS")
		for _, in := range list {
			d := 0
			if in.ParentID != 0 {
				d = depth[in.ParentID] + 1
			}
			depth[in.ID] = d
			var deps []string
			for _, dep := range in.Departments {
				deps = append(deps, dep.Name)
			}
			fmt.Fprintf(tw, "%d\t%s%s\t%s\t%s\t%s\n", in.ID, strings.Repeat("  ", d), in.Code, in.Kind, in.Name, strings.Join(deps, ","))
		}
		return tw.Flush()
	}
	return fmt.Errorf("site %s: unknown; use add or list", verb)
}

// tokenCommand is `sanping token create|revoke|list`.
func tokenCommand(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: sanping token create -institution CODE [-role clinic|doctor] NAME | token revoke ID | token list")
	}
	verb := args[0]
	fl := flag.NewFlagSet("token "+verb, flag.ContinueOnError)
	dataDir := fl.String("data", envOr("SANPING_DATA", "./data"), "data directory")
	inst := fl.String("institution", "", "create: institution code or ID the token acts for")
	role := fl.String("role", auth.RoleClinic, "create: clinic (stations) or doctor")
	if err := fl.Parse(args[1:]); err != nil {
		return err
	}
	e, err := openCLI(ctx, *dataDir)
	if err != nil {
		return err
	}
	defer e.db.Close()
	switch verb {
	case "create":
		if fl.NArg() != 1 {
			return fmt.Errorf("token create: a NAME is required (e.g. the station: 龙山村卫生室-DR)")
		}
		in, err := e.institution(ctx, *inst)
		if err != nil {
			return err
		}
		if in == nil {
			return fmt.Errorf("token create: -institution is required")
		}
		t, secret, err := e.auth.CreateToken(ctx, fl.Arg(0), in.ID, *role, "cli")
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "token %d created for %s (%s). Its secret, shown once:\n%s\n", t.ID, in.Code, t.Role, secret)
		return e.record(ctx, "token.create", fmt.Sprintf("token:%d", t.ID), fmt.Sprintf("name=%s role=%s institution=%d", t.Name, t.Role, t.InstitutionID))
	case "revoke":
		id, err := strconv.ParseInt(fl.Arg(0), 10, 64)
		if err != nil {
			return fmt.Errorf("token revoke: a token ID is required")
		}
		t, err := e.auth.RevokeToken(ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "token %d (%s) revoked\n", t.ID, t.Name)
		return e.record(ctx, "token.revoke", fmt.Sprintf("token:%d", t.ID), "name="+t.Name)
	case "list":
		list, err := e.auth.Tokens(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tINSTITUTION\tROLE\tCREATED\tLAST USED\tREVOKED")
		ts := func(t interface{ IsZero() bool }, s string) string {
			if t.IsZero() {
				return "-"
			}
			return s
		}
		for _, t := range list {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.InstitutionID, t.Role, t.CreatedAt.Format("2006-01-02 15:04"),
				ts(t.LastUsedAt, t.LastUsedAt.Format("2006-01-02 15:04")), ts(t.RevokedAt, t.RevokedAt.Format("2006-01-02 15:04")))
		}
		return tw.Flush()
	}
	return fmt.Errorf("token %s: unknown; use create, revoke or list", verb)
}
