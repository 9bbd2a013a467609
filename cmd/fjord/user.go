package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/fjordhq/fjord/admin"
	"github.com/fjordhq/fjord/storage"
	"github.com/spf13/cobra"
)

func newUserCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage users and their SSH keys"}

	var (
		keyFiles []string
		isAdmin  bool
	)
	addCmd := &cobra.Command{
		Use:   "add NAME --key FILE.pub [--admin]",
		Short: "Add a user with one or more SSH public keys",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || args[0] == "" {
				// An empty $USER in `user add $USER` lands here.
				return fmt.Errorf("user add takes one user name, got %d: e.g. fjord user add alice --key ~/.ssh/id_ed25519.pub", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(keyFiles) == 0 {
				return fmt.Errorf("give the user's public key with --key FILE.pub (e.g. ~/.ssh/id_ed25519.pub; no key yet? create one with ssh-keygen -t ed25519)")
			}
			req := admin.CreateUserRequest{Name: args[0], Admin: isAdmin}
			for _, f := range keyFiles {
				keys, err := readPublicKeys("--key", f)
				if err != nil {
					return err
				}
				req.Keys = append(req.Keys, keys...)
			}
			u, err := admin.NewClient(g.dataDir).CreateUser(cmd.Context(), req)
			if err != nil {
				return err
			}
			role := "user"
			if u.Admin {
				role = "admin"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %s %s with %d key(s)\n", role, u.Name, len(u.Keys))
			for _, k := range u.Keys {
				fmt.Fprintf(cmd.OutOrStdout(), "  %s %s\n", k.Fingerprint, k.Comment)
			}
			return nil
		},
	}
	addCmd.Flags().StringArrayVar(&keyFiles, "key", nil, "public key file (authorized_keys format); repeatable")
	addCmd.Flags().BoolVar(&isAdmin, "admin", false, "make the user an admin (all repos, all access)")

	var output string
	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			users, err := admin.NewClient(g.dataDir).Users(cmd.Context())
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), output, users); done {
				return err
			}
			tw := table(cmd.OutOrStdout())
			fmt.Fprintln(tw, "NAME\tADMIN\tKEYS")
			for _, u := range users {
				fps := make([]string, len(u.Keys))
				for i, k := range u.Keys {
					fps[i] = k.Fingerprint
				}
				fmt.Fprintf(tw, "%s\t%v\t%s\n", u.Name, u.Admin, strings.Join(fps, ", "))
			}
			return tw.Flush()
		},
	}
	addOutputFlag(listCmd, &output)

	deleteCmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a user, their keys and their grants",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := admin.NewClient(g.dataDir).DeleteUser(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted user %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(addCmd, listCmd, deleteCmd)
	return cmd
}

func newGrantCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "grant USER REPO read|write|none  |  grant list",
		Short: "Give a user read or write access to a repository (none removes it)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && args[0] == "list" {
				return nil
			}
			if len(args) == 1 && storage.Nearest(args[0], []string{"list"}) != "" {
				// `fjord grant lsit`: a typo of the one subcommand.
				return fmt.Errorf("unknown command %q for \"fjord grant\"; did you mean list? (to set access: fjord grant USER REPO read|write|none)", args[0])
			}
			if len(args) != 3 {
				return fmt.Errorf("grant takes USER REPO read|write|none (e.g. fjord grant alice demo write), or list; got %d argument(s)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c := admin.NewClient(g.dataDir)
			if len(args) == 1 {
				grants, err := c.Grants(cmd.Context())
				if err != nil {
					return err
				}
				if done, err := printData(cmd.OutOrStdout(), output, grants); done {
					return err
				}
				tw := table(cmd.OutOrStdout())
				fmt.Fprintln(tw, "USER\tREPO\tACCESS")
				for _, gr := range grants {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", gr.User, gr.Repo, gr.Access)
				}
				return tw.Flush()
			}
			gr, err := c.SetGrant(cmd.Context(), storage.Grant{User: args[0], Repo: args[1], Access: args[2]})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s now has %s access to %s\n", gr.User, gr.Access, gr.Repo)
			return nil
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

// readPublicKeys reads the authorized_keys lines of a public key file given
// with flag, with the fix for each way a new user gets it wrong: a key
// never generated, or the private key given instead of the .pub.
func readPublicKeys(flag, path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s %s: no such file; create a key pair with ssh-keygen -t ed25519 (it writes ~/.ssh/id_ed25519 and ~/.ssh/id_ed25519.pub) and give the .pub file, e.g. %s ~/.ssh/id_ed25519.pub", flag, path, flag)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, path, err)
	}
	if strings.Contains(string(b), "PRIVATE KEY") {
		return nil, fmt.Errorf("%s %s is a private key: give the public key, e.g. %s %s.pub", flag, path, flag, path)
	}
	var keys []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			keys = append(keys, line)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s %s holds no public key: give a .pub file, e.g. %s ~/.ssh/id_ed25519.pub", flag, path, flag)
	}
	return keys, nil
}
