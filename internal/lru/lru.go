// Package lru is a bounded map that drops its least recently used entry.
package lru

import "container/list"

// LRU is a bounded map that drops the least recently used entry when full.
// It does no locking of its own: its owner does.
type LRU[K comparable, V any] struct {
	max   int
	order *list.List // of *lruEntry, most recently used first
	byKey map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
}

// New returns an LRU that keeps at most max entries.
func New[K comparable, V any](max int) *LRU[K, V] {
	return &LRU[K, V]{max: max, order: list.New(), byKey: make(map[K]*list.Element)}
}

// Get returns the key's value and makes it the most recently used.
func (c *LRU[K, V]) Get(key K) (V, bool) {
	if el, ok := c.byKey[key]; ok {
		c.order.MoveToFront(el)
		return el.Value.(*lruEntry[K, V]).val, true
	}
	var zero V
	return zero, false
}

// Add stores val unless the key has a value already, and returns the value
// the key has afterwards.
func (c *LRU[K, V]) Add(key K, val V) V {
	if have, ok := c.Get(key); ok {
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

// Len is the number of entries kept.
func (c *LRU[K, V]) Len() int { return len(c.byKey) }
