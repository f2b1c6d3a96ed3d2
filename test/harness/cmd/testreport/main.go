// testreport is make test's reader of `go test -json` (hack/gotest.sh, hack/test.sh):
//
//	go test -json ... | testreport render [-v] -save FILE   # print as go test would, keep the stream
//	testreport skips -allow LIST FILE...                     # count the skips; fail on any not in LIST
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/shiphold/shiphold/test/harness/testreport"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "render":
		os.Exit(render(os.Args[2:]))
	case "skips":
		os.Exit(skips(os.Args[2:]))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: testreport render [-v] -save FILE < go-test-json\n       testreport skips -allow LIST FILE...")
	os.Exit(2)
}

func render(args []string) int {
	fs := flag.NewFlagSet("render", flag.ExitOnError)
	verbose := fs.Bool("v", false, "print every output line, as go test -v")
	save := fs.String("save", "", "file to keep the -json stream in (for testreport skips)")
	fs.Parse(args)
	var raw io.Writer // nil: keep nothing
	if *save != "" {
		f, err := os.Create(*save)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			return 2
		}
		defer f.Close()
		raw = f
	}
	res, err := testreport.Render(os.Stdin, raw, os.Stdout, *verbose)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		return 2
	}
	if res.Failures > 0 {
		return 1
	}
	return 0
}

func skips(args []string) int {
	fs := flag.NewFlagSet("skips", flag.ExitOnError)
	allow := fs.String("allow", "", "the allow-list: \"<package> <test> <reason>\" lines")
	fs.Parse(args)
	if *allow == "" {
		usage()
	}
	list, err := testreport.ReadAllowList(*allow)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		return 2
	}
	var all []testreport.Skip
	for _, f := range fs.Args() {
		s, err := testreport.ReadSkips(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			return 2
		}
		all = append(all, s...)
	}
	if !testreport.Check(os.Stdout, all, list, *allow) {
		return 1
	}
	return 0
}
