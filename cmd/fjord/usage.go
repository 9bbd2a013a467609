package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// strictGroups makes every command that only groups others (fjord,
// fjord repo, fjord mirror, …) refuse an unknown subcommand with a
// non-zero exit and the nearest real one, instead of printing help and
// exiting 0, which scripts would take for success. Run without a
// subcommand, a group prints its help as before.
func strictGroups(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		strictGroups(c)
	}
	if !cmd.HasSubCommands() || cmd.Runnable() {
		return
	}
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		return unknownCommand(cmd, args[0])
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
}

// unknownCommand is the error for `fjord GROUP TYPO`.
func unknownCommand(cmd *cobra.Command, typed string) error {
	msg := fmt.Sprintf("unknown command %q for %q", typed, cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's own default for the root
	}
	if s := cmd.SuggestionsFor(typed); len(s) > 0 {
		return fmt.Errorf("%s; did you mean %s?", msg, strings.Join(s, " or "))
	}
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return fmt.Errorf("%s; the commands are %s (see %s --help)", msg, strings.Join(names, ", "), cmd.CommandPath())
}

// flagError replaces pflag's parse errors for a bad flag value
// (`strconv.ParseBool: parsing "yes": invalid syntax`) with one that names
// the flag and shows a value it takes.
func flagError(_ *cobra.Command, err error) error {
	var ive *pflag.InvalidValueError
	if !errors.As(err, &ive) {
		return err
	}
	f := ive.GetFlag()
	example := map[string]string{
		"bool":        "true or false, e.g. --%s=true",
		"duration":    "a duration, e.g. --%s=90s or --%s=10m",
		"int":         "a whole number, e.g. --%s=10",
		"int64":       "a whole number, e.g. --%s=1073741824",
		"stringArray": "a value, e.g. --%s=VALUE",
	}[f.Value.Type()]
	if example == "" {
		return fmt.Errorf("--%s %q: %v", f.Name, ive.GetValue(), err)
	}
	example = strings.ReplaceAll(example, "%s", f.Name)
	return fmt.Errorf("--%s %q: want %s", f.Name, ive.GetValue(), example)
}
