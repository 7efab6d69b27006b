package cli

import "github.com/spf13/cobra"

func (a *app) auditCmd() *cobra.Command   { return &cobra.Command{Use: "audit"} }
func (a *app) witnessCmd() *cobra.Command { return &cobra.Command{Use: "witness"} }
func (a *app) benchCmd() *cobra.Command   { return &cobra.Command{Use: "bench"} }
