package memory_test

import (
	"testing"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/memory"
	"github.com/herald-gw/herald/registrytest"
)

func TestRegistryBehaviour(t *testing.T) {
	registrytest.Run(t, func(t *testing.T, ttl time.Duration) herald.Registry {
		return memory.NewRegistry(ttl, nil)
	})
}
