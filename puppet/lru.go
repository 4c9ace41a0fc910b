package puppet

import "container/list"

// lru is a bounded map that drops the least recently used entry when full.
// It does no locking of its own: its owner does.
type lru[K comparable, V any] struct {
	max   int
	order *list.List // of *lruEntry, most recently used first
	byKey map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, order: list.New(), byKey: make(map[K]*list.Element)}
}

func (c *lru[K, V]) get(key K) (V, bool) {
	if el, ok := c.byKey[key]; ok {
		c.order.MoveToFront(el)
		return el.Value.(*lruEntry[K, V]).val, true
	}
	var zero V
	return zero, false
}

// add stores val unless the key has a value already, and returns the value
// the key has afterwards.
func (c *lru[K, V]) add(key K, val V) V {
	if have, ok := c.get(key); ok {
		return have
	}
	c.byKey[key] = c.order.PushFront(&lruEntry[K, V]{key: key, val: val})
	for c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.byKey, oldest.Value.(*lruEntry[K, V]).key)
	}
	return val
}

func (c *lru[K, V]) len() int { return len(c.byKey) }
