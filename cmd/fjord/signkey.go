package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/fjordhq/fjord/admin"
)

func newSignKeyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "signkey",
		Short: "Signing keys: the public keys a project's signatureKeys may require commits to be signed by",
		Long: `signkey manages the public keys fjord trusts for commit signatures: OpenPGP
keys (git's default gpg.format) and SSH keys (gpg.format=ssh). A project
(AppProject) lists in spec.signatureKeys the keys its apps' commits must be
signed by, each as {keyID: ...}: the key's fjord name, its OpenPGP key ID or
fingerprint, or its SSH SHA256: fingerprint. A commit that is unsigned or
signed by another key is not applied; the app stays on its last verified
commit and fjord app get says which commit was refused and why.`,
	}
	cmd.AddCommand(newSignKeyAddCmd(g), newSignKeyListCmd(g), newSignKeyDeleteCmd(g))
	return cmd
}

func newSignKeyAddCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "add NAME --file PUBKEY",
		Short: "Trust a public key: an armored OpenPGP key (gpg --armor --export KEYID) or an SSH .pub file",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || args[0] == "" {
				return fmt.Errorf("signkey add takes one key name, got %d: e.g. fjord signkey add ci --file ~/.ssh/ci_signing.pub", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(file)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("--file %s: no such file: give the public key file (gpg --armor --export KEYID > key.asc, or an SSH key's .pub)", file)
			}
			if err != nil {
				return fmt.Errorf("--file %s: %w", file, err)
			}
			k, err := admin.NewClient(g.dataDir).AddSigningKey(cmd.Context(), args[0], data)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signing key %s added: %s %s %s\n", k.Name, k.Type, k.Fingerprint, k.Identity)
			id := k.Fingerprint
			if k.KeyID != "" {
				id = k.KeyID
			}
			fmt.Fprintf(cmd.OutOrStdout(), "require it in a project with:\n  signatureKeys:\n  - keyID: %s\n", id)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "public key file: armored OpenPGP public key, or one SSH public key line (required)")
	cmd.MarkFlagRequired("file")
	return cmd
}

func newSignKeyListCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List trusted signing keys: name, type, key ID or fingerprint, identity",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ks, err := admin.NewClient(g.dataDir).SigningKeys(cmd.Context())
			if err != nil {
				return err
			}
			if done, err := printData(cmd.OutOrStdout(), out, ks); done {
				return err
			}
			tw := table(cmd.OutOrStdout())
			fmt.Fprintln(tw, "NAME\tTYPE\tKEY ID\tFINGERPRINT\tIDENTITY\tADDED")
			for _, k := range ks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.Name, k.Type, orDash(k.KeyID), k.Fingerprint, orDash(k.Identity), k.Created.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	addOutputFlag(cmd, &out)
	return cmd
}

func newSignKeyDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Stop trusting a key (refused while a project's signatureKeys name it, naming the project)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := admin.NewClient(g.dataDir).DeleteSigningKey(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signing key %s deleted\n", args[0])
			return nil
		},
	}
}
