"""Names of every key in the state store (DESIGN.md §5), in one place.

A prefix lets several worlds (or test runs) share one Redis-compatible server without meeting.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = ""

    def npc(self, npc_id: str) -> str:
        return f"{self.prefix}npc:{npc_id}"

    def memory(self, npc_id: str, memory_id: str) -> str:
        return f"{self.prefix}npc:{npc_id}:memory:{memory_id}"

    def memory_index(self, npc_id: str) -> str:
        """Sorted set of an NPC's memory ids, scored by creation time."""
        return f"{self.prefix}npc:{npc_id}:memories"

    # Outside `npc:`, whose hashes the store's vector index (when it has one) reads as memories.
    def memory_cues(self, npc_id: str) -> str:
        """Hash of an NPC's memory ids to their cues (what ranking takes besides meaning)."""
        return f"{self.prefix}memory-cues:{npc_id}"

    def memory_vectors(self, npc_id: str) -> str:
        """Hash of an NPC's memory ids to their vectors (float32 bytes)."""
        return f"{self.prefix}memory-vectors:{npc_id}"

    def action_queue(self, npc_id: str) -> str:
        """Sorted set of the NPC's undelivered action ids, scored by when they may be offered."""
        return f"{self.prefix}npc:{npc_id}:actions"

    def ready_actions(self) -> str:
        """The same action ids across every NPC, for the bridge's batch fetch."""
        return f"{self.prefix}actions:ready"

    def action(self, action_id: str) -> str:
        return f"{self.prefix}action:{action_id}"

    def relationships(self, npc_id: str) -> str:
        return f"{self.prefix}relationships:{npc_id}"

    def relationship(self, a: str, b: str) -> str:
        return f"{self.prefix}relationship:{a}:{b}"

    def world(self, system: str) -> str:
        return f"{self.prefix}world:{system}"

    def world_history(self, system: str) -> str:
        """Bounded stream of what a world system changed and why."""
        return f"{self.prefix}world:{system}:history"

    def world_inbox(self, system: str) -> str:
        """Bounded stream of game events routed to a world system, read by its next cycle."""
        return f"{self.prefix}world:{system}:inbox"

    def world_cycles(self, system: str) -> str:
        """Sorted set of the cycle ids whose changes are written (bounded): a re-run writes nothing."""
        return f"{self.prefix}world:{system}:cycles"

    def world_cycle_outcome(self, system: str, cycle_id: str) -> str:
        """What a cycle decided (with a TTL), so a re-run repeats the same follow-ups."""
        return f"{self.prefix}world:{system}:cycle:{cycle_id}"

    def quest(self, quest_id: str) -> str:
        """Hash of a generated quest: status, kind, giver, slot, expires_at and the whole record."""
        return f"{self.prefix}quest:{quest_id}"

    def open_quests(self) -> str:
        """Sorted set of open quest ids scored by their expiry."""
        return f"{self.prefix}quests:open"

    def world_inbox_routed(self, system: str, event_id: str) -> str:
        """Marks an event id routed to a system's inbox (with a TTL), so a retry adds nothing."""
        return f"{self.prefix}world:{system}:inbox:routed:{event_id}"

    def faction(self, faction_id: str) -> str:
        return f"{self.prefix}faction:{faction_id}"

    def map_npcs(self, map_name: str) -> str:
        """Hash npc_id -> "x,y" of the NPCs living on a map (the coordinator's and the gossip's index)."""
        return f"{self.prefix}map:{map_name}:npcs"

    def faction_members(self, faction_id: str) -> str:
        return f"{self.prefix}faction:{faction_id}:members"

    def all_npcs(self) -> str:
        """Hash npc_id -> map of every NPC that has lived."""
        return f"{self.prefix}npcs"

    def events_pending(self) -> str:
        return f"{self.prefix}events:pending"

    def event(self, event_id: str) -> str:
        return f"{self.prefix}event:{event_id}"

    def llm_cache(self, digest: str) -> str:
        return f"{self.prefix}llm:cache:{digest}"

    def llm_decision_cache(self, digest: str) -> str:
        return f"{self.prefix}llm:decision:{digest}"

    def embedding_cache(self, digest: str) -> str:
        return f"{self.prefix}llm:embedding:{digest}"

    def memory_meta(self, npc_id: str) -> str:
        """Hash of an NPC's memory bookkeeping: the horizon below which memories were consolidated."""
        return f"{self.prefix}npc:{npc_id}:memory-meta"

    def memory_search_index(self, dimensions: int) -> str:
        """FT.SEARCH index over every NPC's memory vectors of one dimension."""
        return f"{self.prefix}idx:memories:{dimensions}"

    def relationship_change(self, a: str, b: str, change_id: str) -> str:
        """Marks a relationship change as applied, with a TTL: changes apply once per id."""
        return f"{self.prefix}relationship:{a}:{b}:change:{change_id}"

    def relationship_owners(self) -> str:
        """Set of every owner of a `relationships:{id}` hash, for the world graph."""
        return f"{self.prefix}relationships:owners"

    def meeting(self, a: str, b: str) -> str:
        """Two NPCs met lately (a TTL key, the pair sorted): they greet at most once per interval."""
        first, second = sorted((a, b))
        return f"{self.prefix}meeting:{first}:{second}"

    def news_told(self, news_id: str, listener: str) -> str:
        """A piece of news was told to this NPC (a TTL key): nobody tells it the same news again."""
        return f"{self.prefix}news:{news_id}:told:{listener}"

    def llm_bucket(self, provider: str) -> str:
        return f"{self.prefix}llm:bucket:{provider}"

    def llm_counter(self) -> str:
        return f"{self.prefix}llm:stats"

    def feed(self) -> str:
        """Bounded stream of what NPCs say and do, for the world viewer."""
        return f"{self.prefix}feed"

    def feed_appended(self, entry_id: str) -> str:
        """Marker that one feed entry was appended, so a re-run activity does not append it twice."""
        return f"{self.prefix}feed:appended:{entry_id}"

    def quarantined_memory(self, npc_id: str, memory_id: str) -> str:
        """A memory record that failed its schema, set aside (with a TTL) by the coherence monitor."""
        return f"{self.prefix}npc:{npc_id}:memory:{memory_id}:quarantined"

    def coherence_report(self) -> str:
        """The coherence monitor's last report (JSON)."""
        return f"{self.prefix}coherence:report"

    def llm_spend(self, scope: str, dimension: str, window: int) -> str:
        """What one scope ("all" or "tier:{tier}") spent of one budget dimension (calls, tokens,
        money) in one time window (minute, hour or day number since the epoch); expires after it."""
        return f"{self.prefix}llm:budget:{scope}:{dimension}:{window}"

    def llm_ladder(self) -> str:
        """Hash of each tier's rung of the degradation ladder, since when and why."""
        return f"{self.prefix}llm:budget:ladder"

    def llm_ladder_history(self) -> str:
        """Bounded stream of the ladder's rung changes."""
        return f"{self.prefix}llm:budget:history"


def text_of(value: object) -> str:
    """A value the store returned, as text: clients may be set to answer bytes or str."""
    return value.decode() if isinstance(value, bytes) else str(value)
