// Command chainsim runs the simulated chain client of package chainsim for the demo: HTTP and WebSocket
// JSON-RPC on one address, the head advancing one block every -block-time.
//
//	chainsim [-listen 127.0.0.1:8545] [-chain-id 1] [-head 1] [-block-time 12s]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cl-agent/cl-agent/internal/chainsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "chainsim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("chainsim", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8545", "address to listen on (HTTP and WebSocket)")
	chainID := fs.Uint64("chain-id", 1, "eth_chainId")
	head := fs.Uint64("head", 1, "first head")
	blockTime := fs.Duration("block-time", 12*time.Second, "one new block this often (0: never)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := chainsim.Start(chainsim.Options{Addr: *listen, ChainID: *chainID, Head: *head})
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Printf("chainsim: http %s ws %s chain %d\n", s.URL, s.WSURL, *chainID)
	if *blockTime <= 0 {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(*blockTime)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			s.Advance(1)
		}
	}
}
