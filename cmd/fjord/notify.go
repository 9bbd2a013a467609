package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fjordhq/fjord/admin"
	"github.com/fjordhq/fjord/notify"
	"github.com/fjordhq/fjord/storage"
)

func newNotifyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "notify",
		Short: "Notifications: webhooks fjord POSTs app and mirror events to",
		Long: `notify manages webhooks fjord POSTs events to: sync-failed, health-degraded,
deployed, drift-reverted, mirror-failed. Each event is one POST per notifier
(a resync that finds the same failure sends nothing), signed with
HMAC-SHA256 in the X-Fjord-Signature-256 header when the notifier has a
secret, retried with backoff until the receiver answers 2xx, and recorded
with every attempt's response code (notify history).`,
	}
	cmd.AddCommand(newNotifyAddCmd(g), newNotifyListCmd(g), newNotifyHistoryCmd(g), newNotifyDeleteCmd(g))
	return cmd
}

func newNotifyAddCmd(g *globals) *cobra.Command {
	var (
		req        admin.AddNotifierRequest
		on, secret string
	)
	cmd := &cobra.Command{
		Use:   "add NAME --url URL --on EVENTS [--format slack|json] [--secret-file F] [--app GLOB]",
		Short: "Add a webhook; it is sent the events that happen from now on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			events, err := notify.ParseEventTypes(on)
			if err != nil {
				return fmt.Errorf("--on: %w", err)
			}
			req.On = events
			if secret != "" {
				b, err := os.ReadFile(secret)
				if errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("--secret-file %s: no such file: write the shared secret into it (e.g. openssl rand -hex 32 > %s)", secret, secret)
				}
				if err != nil {
					return fmt.Errorf("--secret-file %s: %w", secret, err)
				}
				if req.Secret = strings.TrimSpace(string(b)); req.Secret == "" {
					return fmt.Errorf("--secret-file %s is empty: write the shared secret into it", secret)
				}
			}
			n, err := admin.NewClient(g.dataDir).AddNotifier(cmd.Context(), req)
			if err != nil {
				return err
			}
			signed := "unsigned"
			if n.Signed {
				signed = "signed (" + notify.HeaderSignature + ")"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "notifier %s added: %s to %s, %s, %s\n", n.Name, strings.Join(n.On, ","), n.URL, n.Format, signed)
			return nil
		},
	}
	cmd.Flags().StringVar(&req.URL, "url", "", "http:// or https:// URL to POST to (required)")
	cmd.Flags().StringVar(&on, "on", "", "events to send, comma-separated: sync-failed,health-degraded,deployed,drift-reverted,mirror-failed (required)")
	cmd.Flags().StringVar(&req.Format, "format", notify.FormatJSON, "body: json (fjord's event document) or slack (an incoming-webhook message)")
	cmd.Flags().StringVar(&secret, "secret-file", "", "file holding the secret that signs each POST (HMAC-SHA256)")
	cmd.Flags().StringVar(&req.AppGlob, "app", "", "only app events of apps whose name matches this glob (mirror events are not filtered)")
	cmd.MarkFlagRequired("url")
	cmd.MarkFlagRequired("on")
	return cmd
}

func newNotifyListCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List notifiers: URL (path hidden), events, apps, and how the last delivery went",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ns, err := admin.NewClient(g.dataDir).Notifiers(cmd.Context())
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), out, ns); done {
				return err
			}
			tw := table(cmd.OutOrStdout())
			fmt.Fprintln(tw, "NAME\tURL\tFORMAT\tEVENTS\tAPPS\tSIGNED\tLAST")
			for _, n := range ns {
				last := "-"
				if d := n.Last; d != nil {
					last = fmt.Sprintf("%s %s %s", d.Event, d.State, attemptSummary(*d))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%s\n", n.Name, n.URL, n.Format, strings.Join(n.On, ","), orDash(n.AppGlob), n.Signed, last)
			}
			return tw.Flush()
		},
	}
	addOutputFlag(cmd, &out)
	return cmd
}

func newNotifyHistoryCmd(g *globals) *cobra.Command {
	var (
		out string
		n   int
	)
	cmd := &cobra.Command{
		Use:   "history NAME",
		Short: "A notifier's deliveries, newest first, with every attempt's response code",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ds, err := admin.NewClient(g.dataDir).NotifierHistory(cmd.Context(), args[0], n)
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), out, ds); done {
				return err
			}
			tw := table(cmd.OutOrStdout())
			fmt.Fprintln(tw, "ID\tTIME\tEVENT\tSTATE\tATTEMPTS (CODES)\tLAST ERROR")
			for _, d := range ds {
				lastErr := "-"
				if len(d.Attempts) > 0 && d.Attempts[len(d.Attempts)-1].Error != "" {
					lastErr = oneLine(d.Attempts[len(d.Attempts)-1].Error, 80)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Created.Local().Format(time.DateTime), d.Event, d.State, attemptSummary(d), lastErr)
			}
			return tw.Flush()
		},
	}
	addOutputFlag(cmd, &out)
	cmd.Flags().IntVarP(&n, "limit", "n", 20, "deliveries to show (0: all kept)")
	return cmd
}

// attemptSummary is "3 (503,503,200)".
func attemptSummary(d storage.Delivery) string {
	var codes []string
	for _, a := range d.Attempts {
		if a.Code == 0 {
			codes = append(codes, "none")
		} else {
			codes = append(codes, fmt.Sprint(a.Code))
		}
	}
	return fmt.Sprintf("%d (%s)", len(d.Attempts), strings.Join(codes, ","))
}

func newNotifyDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a notifier and its history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := admin.NewClient(g.dataDir).DeleteNotifier(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "notifier %s deleted\n", args[0])
			return nil
		},
	}
}
