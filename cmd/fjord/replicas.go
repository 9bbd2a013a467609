package main

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/fjordhq/fjord/admin"
	"github.com/fjordhq/fjord/ha"
	"github.com/spf13/cobra"
)

func newReplicasCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "replicas",
		Short: "Show the replica group: each member's role, position, lag and last contact",
		Long: `replicas asks the server on the data dir, any member of a group started
with serve --ha, for the group as the Leases and the primary's stream tell
it: each member's id, role (primary or replica), replication position, lag
in changes and in seconds, and the primary's last contact with it. When the
group takes no pushes (no primary, or its synchronous replicas gone) it
says why.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := admin.NewClient(g.dataDir).Replicas(cmd.Context())
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), output, st); done {
				return err
			}
			printReplicas(cmd.OutOrStdout(), st, time.Now())
			return nil
		},
	}
	addOutputFlag(cmd, &output)
	cmd.AddCommand(newReplicasPromoteCmd(g))
	return cmd
}

func printReplicas(w io.Writer, st ha.Status, now time.Time) {
	tw := table(w)
	fmt.Fprintln(tw, "ID\tROLE\tPOSITION\tLAG\tLAG(s)\tLAST CONTACT\tSYNC\tALIVE\tADDRESS")
	for _, m := range st.Members {
		contact := "-"
		if !m.LastContact.IsZero() {
			contact = now.Sub(m.LastContact).Round(100*time.Millisecond).String() + " ago"
		}
		sync, alive := "", "yes"
		if m.Sync {
			sync = "sync"
		}
		if !m.Alive {
			alive = "no"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Role, m.Position, m.LagChanges,
			strconv.FormatFloat(m.LagSeconds, 'f', 1, 64), contact, sync, alive, m.Advertise)
	}
	tw.Flush()
	primary := st.Primary
	if primary == "" {
		primary = "none"
	}
	fmt.Fprintf(w, "group %s: primary %s, %d synchronous replica(s) required, last acknowledged position %d (asked %s)\n",
		st.Group, primary, st.SyncReplicas, st.AckedPosition, st.Self)
	if st.ReadOnly {
		fmt.Fprintf(w, "READ-ONLY: %s\n", st.Reason)
	}
}

func newReplicasPromoteCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "promote ID --force",
		Short: "Let member ID take over as primary although it may lack acknowledged pushes",
		Long: `promote is the escape hatch for a group that stays read-only because no
synchronous replica is alive to take over: it lets member ID take the
primary Lease at its next try. Pushes the last primary acknowledged may be
missing on ID, which is why --force is required. It refuses while a
primary holds the Lease.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := admin.NewClient(g.dataDir).Promote(cmd.Context(), args[0], force); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s may take over now; `fjord replicas` shows it as primary within a retry period\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "accept that pushes the last primary acknowledged may be lost")
	return cmd
}
