package commands_test

import (
	"testing"

	"github.com/orderflow/orderflow/commands"
	"github.com/orderflow/orderflow/commands/commandstest"
)

// TestReplies runs the answers of the traveling commands on the in-memory
// store; the services' tests run the same on PostgreSQL.
func TestReplies(t *testing.T) {
	commandstest.RunReplies(t, func(*testing.T) commands.EventStore { return newStore() })
}
