package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"sanping/server/auth"
	"sanping/server/store"
)

// userCommand is `server user add|list|passwd|lock|unlock`, working on the data directory, so a
// county IT person can manage accounts without the UI. Passwords are read from standard input
// (one line), never from the command line where other users of the machine could see them.
func userCommand(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: server user add|list|passwd|lock|unlock [-data DIR] [NAME]")
	}
	verb := args[0]
	fl := flag.NewFlagSet("user "+verb, flag.ContinueOnError)
	dataDir := fl.String("data", envOr("SANPING_DATA", "./data"), "data directory")
	roles := fl.String("roles", auth.RoleClinic, "roles of a new user, comma-separated: admin, doctor, clinic")
	if err := fl.Parse(args[1:]); err != nil {
		return err
	}
	name := fl.Arg(0)
	if verb != "list" && name == "" {
		return fmt.Errorf("user %s: a user name is required", verb)
	}
	db, err := store.OpenDB(filepath.Join(*dataDir, "index.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	svc, err := auth.New(ctx, db, nil)
	if err != nil {
		return err
	}
	readPassword := func() (string, error) {
		fmt.Fprintf(stdout, "password for %s (one line on standard input): ", name)
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if len(pw) < 8 {
			return "", fmt.Errorf("the password must have at least 8 characters")
		}
		return pw, nil
	}
	switch verb {
	case "add":
		pw, err := readPassword()
		if err != nil {
			return err
		}
		if err := svc.AddUser(ctx, name, pw, strings.Split(*roles, ",")); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nuser %s added with roles %s\n", name, *roles)
	case "passwd":
		pw, err := readPassword()
		if err != nil {
			return err
		}
		if err := svc.SetPassword(ctx, name, pw); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\npassword of %s changed\n", name)
	case "lock":
		if err := svc.Lock(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s locked\n", name)
	case "unlock":
		if err := svc.Unlock(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "user %s unlocked\n", name)
	case "list":
		users, err := svc.Users(ctx)
		if err != nil {
			return err
		}
		for _, u := range users {
			state := "active"
			if !u.LockedUntil.IsZero() {
				state = "locked until " + u.LockedUntil.Format("2006-01-02 15:04 MST")
				if u.LockedUntil.Year() > 9000 {
					state = "locked by an admin"
				}
			}
			fmt.Fprintf(stdout, "%-20s %-20s %s\n", u.Username, strings.Join(u.Roles, ","), state)
		}
	default:
		return fmt.Errorf("user %s: unknown; use add, list, passwd, lock or unlock", verb)
	}
	return nil
}
