package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/fjordhq/fjord/admin"
	"github.com/fjordhq/fjord/mirror"
	"github.com/fjordhq/fjord/storage"
	"github.com/spf13/cobra"
)

func newMirrorCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "mirror", Short: "Pull mirrors of upstream repositories"}

	var (
		req                                          admin.AddMirrorRequest
		sshKey, knownHosts, tokenFile, webhookSecret string
		output                                       string
	)
	addCmd := &cobra.Command{
		Use:   "add NAME --upstream URL",
		Short: "Add a pull mirror and run its first sync",
		Long: `add creates the repo NAME as a read-only mirror of URL and syncs it at once;
if that first sync fails, nothing is added and the error says why.

Upstreams: ssh://, git@host:path, https://, http://, git://, file://.
Secrets are given as files, copied into the data dir (0600) and never shown:
  --ssh-key and --known-hosts for ssh (host keys are always checked),
  --token-file for https (sent as HTTP basic auth, never in the URL).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Repo = args[0]
			// Refuse a bad URL (a password in it) before saying anything
			// about syncing from it.
			up, err := mirror.ParseUpstream(req.Upstream)
			if err != nil {
				return fmt.Errorf("--upstream: %w", err)
			}
			req.Credentials, err = readCredentials(map[string]string{mirror.CredSSHKey: sshKey, mirror.CredKnownHosts: knownHosts,
				mirror.CredToken: tokenFile, mirror.CredWebhookSecret: webhookSecret})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "syncing %s from %s ...\n", req.Repo, up.URL)
			rec, err := admin.NewClient(g.dataDir).AddMirror(cmd.Context(), req)
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), output, rec); done {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "mirror %s added: %d refs in %s\n", req.Repo, len(rec.Changes), rec.Duration.Round(time.Millisecond))
			return nil
		},
	}
	f := addCmd.Flags()
	f.StringVar(&req.Upstream, "upstream", "", "upstream URL (required)")
	f.DurationVar(&req.Interval, "interval", time.Minute, "time between scheduled syncs")
	f.IntVar(&req.Retention, "retention", 100, "history protection events (and backup refs) to keep")
	f.StringVar(&sshKey, "ssh-key", "", "private key file for an ssh upstream")
	f.StringVar(&knownHosts, "known-hosts", "", "known_hosts file with the ssh upstream's host key")
	f.StringVar(&tokenFile, "token-file", "", "file holding an access token for an https upstream")
	f.StringVar(&webhookSecret, "webhook-secret-file", "", "file holding the secret webhooks are signed with")
	addCmd.MarkFlagRequired("upstream")
	addOutputFlag(addCmd, &output)

	var listOut string
	listCmd := &cobra.Command{
		Use:   "list",
		Short: "List mirrors: upstream, interval, last success, lag, last error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ms, err := admin.NewClient(g.dataDir).Mirrors(cmd.Context())
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), listOut, ms); done {
				return err
			}
			tw := table(cmd.OutOrStdout())
			fmt.Fprintln(tw, "NAME\tUPSTREAM\tINTERVAL\tLAST SUCCESS\tLAG\tLAST ERROR")
			for _, m := range ms {
				lag := "in sync"
				if m.LastError != "" {
					lag = m.Lag.String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Repo, m.Upstream, m.Interval, ago(m.LastSuccess), lag, oneLine(m.LastError, 80))
			}
			return tw.Flush()
		},
	}
	addOutputFlag(listCmd, &listOut)

	var (
		statusOut string
		statusN   int
	)
	statusCmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show a mirror's last syncs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			recs, err := admin.NewClient(g.dataDir).MirrorSyncs(cmd.Context(), args[0], statusN)
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), statusOut, recs); done {
				return err
			}
			tw := table(cmd.OutOrStdout())
			fmt.Fprintln(tw, "START\tTRIGGER\tDURATION\tFETCHED\tREFS CHANGED\tERROR")
			for _, r := range recs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%d\t%s\n", r.Start.Local().Format(time.DateTime), r.Trigger, r.Duration.Round(time.Millisecond), r.Fetched, len(r.Changes), oneLine(r.Error, 80))
			}
			return tw.Flush()
		},
	}
	addOutputFlag(statusCmd, &statusOut)
	statusCmd.Flags().IntVarP(&statusN, "last", "n", 20, "number of syncs to show")

	var syncOut string
	syncCmd := &cobra.Command{
		Use:   "sync NAME",
		Short: "Sync a mirror now, wait, and print what changed",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rec, err := admin.NewClient(g.dataDir).SyncMirror(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), syncOut, rec); done {
				return err
			}
			printSync(cmd.OutOrStdout(), args[0], rec)
			if rec.Error != "" {
				return fmt.Errorf("sync of %s failed (it keeps serving its last good state; scheduled syncs retry with backoff): %s", args[0], rec.Error)
			}
			return nil
		},
	}
	addOutputFlag(syncCmd, &syncOut)

	var histOut string
	historyCmd := &cobra.Command{
		Use:   "history NAME",
		Short: "List upstream force-pushes and deletions, and the hidden refs that keep the old tips",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			evs, err := admin.NewClient(g.dataDir).MirrorEvents(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), histOut, evs); done {
				return err
			}
			tw := table(cmd.OutOrStdout())
			fmt.Fprintln(tw, "ID\tTIME\tKIND\tREF\tOLD\tNEW\tKEPT AS")
			for _, e := range evs {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Time.Local().Format(time.DateTime), e.Kind, e.Ref, short(e.Old), short(e.New), e.BackupRef)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(evs) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "\nTo put an old tip back upstream: fjord mirror restore %s ID [--to-branch BRANCH]\n", args[0])
			}
			return nil
		},
	}
	addOutputFlag(historyCmd, &histOut)

	var keepRepo, force bool
	deleteCmd := &cobra.Command{
		Use:   "delete NAME [--keep-repo]",
		Short: "Stop mirroring; delete the repo too unless --keep-repo (refused while an app uses it, unless --force)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := admin.NewClient(g.dataDir).DeleteMirror(cmd.Context(), args[0], keepRepo, force); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "mirror %s deleted\n", args[0])
			return nil
		},
	}
	deleteCmd.Flags().BoolVar(&keepRepo, "keep-repo", false, "keep the repo as an ordinary hosted repo")
	deleteCmd.Flags().BoolVar(&force, "force", false, "delete the repo even when apps use it (their syncs fail until it exists again)")

	cmd.AddCommand(addCmd, listCmd, statusCmd, syncCmd, historyCmd, newMirrorRestoreCmd(g), newMirrorUpdateCmd(g), deleteCmd)
	return cmd
}

// credentialFlags maps the names `mirror update --remove` takes to
// credential files.
var credentialFlags = map[string]string{"ssh-key": mirror.CredSSHKey, "token": mirror.CredToken, "webhook-secret": mirror.CredWebhookSecret}

func newMirrorUpdateCmd(g *globals) *cobra.Command {
	var (
		interval                                     time.Duration
		retention                                    int
		sshKey, knownHosts, tokenFile, webhookSecret string
		remove                                       []string
	)
	cmd := &cobra.Command{
		Use:   "update NAME [--interval D] [--retention N] [--ssh-key F] [--known-hosts F] [--token-file F] [--webhook-secret-file F] [--remove ssh-key|token|webhook-secret]",
		Short: "Change a mirror's interval, retention or credentials, keeping its history",
		Long: `update changes a mirror in place: no delete-and-add, so its repo, sync
history and history-protection events stay. Credential files replace the
ones stored; --remove deletes one. After a credential change update syncs at
once and prints how that went, so a wrong key or token shows now.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var req admin.UpdateMirrorRequest
			if cmd.Flags().Changed("interval") {
				req.Interval = &interval
			}
			if cmd.Flags().Changed("retention") {
				req.Retention = &retention
			}
			var err error
			req.Credentials, err = readCredentials(map[string]string{mirror.CredSSHKey: sshKey, mirror.CredKnownHosts: knownHosts,
				mirror.CredToken: tokenFile, mirror.CredWebhookSecret: webhookSecret})
			if err != nil {
				return err
			}
			for _, r := range remove {
				name, ok := credentialFlags[r]
				if !ok {
					return fmt.Errorf("--remove %q: give ssh-key, token or webhook-secret", r)
				}
				req.RemoveCredentials = append(req.RemoveCredentials, name)
			}
			if req.Interval == nil && req.Retention == nil && len(req.Credentials) == 0 && len(req.RemoveCredentials) == 0 {
				return fmt.Errorf("nothing to change: give --interval, --retention, a credential file or --remove (see fjord mirror update --help)")
			}
			c := admin.NewClient(g.dataDir)
			m, err := c.UpdateMirror(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			keep := m.Retention
			if keep <= 0 {
				keep = 100 // what a zero Retention means
			}
			creds := strings.Join(m.Credentials, ", ")
			if creds == "" {
				creds = "none"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "mirror %s updated: interval %s, retention %d, credentials %s\n", m.Repo, m.Interval, keep, creds)
			fetchCreds := len(req.RemoveCredentials) > 0
			for name := range req.Credentials {
				fetchCreds = fetchCreds || name != mirror.CredWebhookSecret
			}
			if !fetchCreds {
				return nil
			}
			rec, err := c.SyncMirror(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			printSync(cmd.OutOrStdout(), args[0], rec)
			if rec.Error != "" {
				return fmt.Errorf("mirror %s was updated, but a sync with the new credentials failed: %s", args[0], rec.Error)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&interval, "interval", 0, "time between scheduled syncs")
	f.IntVar(&retention, "retention", 0, "history protection events (and backup refs) to keep; lowering it drops the oldest now")
	f.StringVar(&sshKey, "ssh-key", "", "new private key file for an ssh upstream")
	f.StringVar(&knownHosts, "known-hosts", "", "new known_hosts file with the ssh upstream's host key")
	f.StringVar(&tokenFile, "token-file", "", "file holding a new access token for an https upstream")
	f.StringVar(&webhookSecret, "webhook-secret-file", "", "file holding the new secret webhooks are signed with")
	f.StringArrayVar(&remove, "remove", nil, "delete a stored credential: ssh-key, token or webhook-secret; repeatable")
	return cmd
}

// readCredentials reads the secret files given on the command line, keyed
// by credential name; empty paths are skipped. The flag is named after the
// key (ssh_key -> --ssh-key) except the token and webhook secret files.
func readCredentials(paths map[string]string) (map[string][]byte, error) {
	flags := map[string]string{mirror.CredToken: "token-file", mirror.CredWebhookSecret: "webhook-secret-file"}
	out := map[string][]byte{}
	for name, path := range paths {
		if path == "" {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			flag, ok := flags[name]
			if !ok {
				flag = strings.ReplaceAll(name, "_", "-")
			}
			return nil, fmt.Errorf("--%s: %w", flag, err)
		}
		out[name] = b
	}
	return out, nil
}

func printSync(w io.Writer, name string, rec storage.MirrorSync) {
	switch {
	case rec.Error != "":
		fmt.Fprintf(w, "%s: sync failed after %s\n", name, rec.Duration.Round(time.Millisecond))
	case !rec.Fetched:
		fmt.Fprintf(w, "%s: up to date (checked in %s)\n", name, rec.Duration.Round(time.Millisecond))
	default:
		fmt.Fprintf(w, "%s: %d refs changed in %s\n", name, len(rec.Changes), rec.Duration.Round(time.Millisecond))
	}
	for _, c := range rec.Changes {
		switch {
		case c.Old == "":
			fmt.Fprintf(w, "  + %s %s\n", c.Ref, short(c.New))
		case c.New == "":
			fmt.Fprintf(w, "  - %s (was %s)\n", c.Ref, short(c.Old))
		default:
			fmt.Fprintf(w, "    %s %s..%s\n", c.Ref, short(c.Old), short(c.New))
		}
	}
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func oneLine(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

func newMirrorRestoreCmd(g *globals) *cobra.Command {
	var (
		toBranch string
		output   string
	)
	cmd := &cobra.Command{
		Use:   "restore NAME EVENT [--to-branch BRANCH]",
		Short: "Put the tip an upstream force-push or deletion replaced back upstream, then sync",
		Long: `restore takes an event from fjord mirror history (its ID) and pushes the old
tip fjord kept for it to the mirror's upstream: onto the ref it was on, or
with --to-branch onto a new branch (the safe choice when the upstream's
branch has new work). The push uses --force-with-lease, so it never
overwrites what was pushed upstream since; the mirror's credentials must
be allowed to push. A sync follows, and the mirror serves the restored ref.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := admin.NewClient(g.dataDir).RestoreMirror(cmd.Context(), args[0], args[1], toBranch)
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), output, res); done {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %s (event %d, %s of %s) to the upstream's %s\n", short(res.Event.Old), res.Event.ID, res.Event.Kind, res.Event.Ref, res.Target)
			printSync(cmd.OutOrStdout(), args[0], res.Sync)
			return nil
		},
	}
	cmd.Flags().StringVar(&toBranch, "to-branch", "", "push the old tip to this new branch instead of its own ref")
	addOutputFlag(cmd, &output)
	return cmd
}
