-- rAthena AI World: the outbox/inbox between the NPC scripts and the bridge.
-- Import into rAthena's main database (the one map-server's query_sql uses). Safe to run twice.
--
-- Scripts only ever run tiny indexed statements here (query_sql blocks the map-server's main thread):
--   write a row to ai_event; read up to a few queued rows of ai_action / ai_dialogue by index;
--   update one row by primary key.

-- Game -> service. Written by the NPC scripts, read by the bridge in `id` order from a cursor.
CREATE TABLE IF NOT EXISTS `ai_event` (
  `id` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `npc_id` VARCHAR(40) NULL,            -- NULL for world-wide events (login, kills) fanned out by the bridge
  `kind` VARCHAR(24) NOT NULL,          -- register, talk, touch, login, kill, attacked, item
  `char_id` INT UNSIGNED NULL,
  `account_id` INT UNSIGNED NULL,
  `char_name` VARCHAR(30) NULL,
  `base_level` SMALLINT UNSIGNED NULL,
  `class` SMALLINT UNSIGNED NULL,
  `map` VARCHAR(16) NULL,
  `x` SMALLINT UNSIGNED NULL,
  `y` SMALLINT UNSIGNED NULL,
  `text` VARCHAR(255) NULL,             -- what a player typed (input is cut at 70 bytes by the client)
  `item_id` INT UNSIGNED NULL,
  `amount` INT UNSIGNED NULL,
  `detail` VARCHAR(255) NULL,           -- register: "name|sprite"; kill: mob id; free text otherwise
  `created_at` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (`id`),
  KEY `npc_kind` (`npc_id`, `kind`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Service -> game. Written by the bridge (one row per action id, never twice), executed by the
-- dispatcher NPC, which writes the outcome into the same row exactly once.
CREATE TABLE IF NOT EXISTS `ai_action` (
  `seq` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  `action_id` VARCHAR(80) NOT NULL,
  `npc_id` VARCHAR(40) NOT NULL,
  `npc_name` VARCHAR(50) NOT NULL,      -- the script NPC's unique name, as `npctalk`/`npcwalkto` want it
  `kind` VARCHAR(16) NOT NULL,          -- say, emote, walk_to, move, trade, give_item, give_zeny, start_quest, announce, spawn_monster, weather
  `map` VARCHAR(16) NOT NULL,
  `x` SMALLINT UNSIGNED NOT NULL DEFAULT 0,
  `y` SMALLINT UNSIGNED NOT NULL DEFAULT 0,
  `char_id` INT UNSIGNED NOT NULL DEFAULT 0,
  `item_id` INT UNSIGNED NOT NULL DEFAULT 0,
  `amount` INT UNSIGNED NOT NULL DEFAULT 0,
  `value` INT NOT NULL DEFAULT 0,       -- emotion id, price, quest id, mob id, zeny, announce scope
  `text` VARCHAR(255) NOT NULL DEFAULT '',  -- say/announce text; the weather's name
  `status` ENUM('queued','running','done','failed') NOT NULL DEFAULT 'queued',
  `detail` VARCHAR(255) NOT NULL DEFAULT '',
  `reported` TINYINT UNSIGNED NOT NULL DEFAULT 0,
  `created_at` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  `finished_at` DATETIME NULL,
  PRIMARY KEY (`seq`),
  UNIQUE KEY `action_id` (`action_id`),
  KEY `status_seq` (`status`, `seq`),
  KEY `unreported` (`reported`, `status`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Dialogue replies, keyed by the ai_event row of the player's line. The waiting script polls its
-- own row; a reply that arrives after the script gave up is shown by the dispatcher instead.
CREATE TABLE IF NOT EXISTS `ai_dialogue` (
  `event_id` BIGINT UNSIGNED NOT NULL,
  `npc_id` VARCHAR(40) NOT NULL,
  `char_id` INT UNSIGNED NOT NULL,
  `reply` VARCHAR(512) NOT NULL,
  `emotion` SMALLINT NOT NULL DEFAULT -1,
  `options` VARCHAR(160) NOT NULL DEFAULT '',   -- ':'-separated, as `select` wants them
  `status` ENUM('ready','shown','late','unavailable') NOT NULL DEFAULT 'ready',
  `created_at` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (`event_id`),
  KEY `status_created` (`status`, `created_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- The bridge's persisted cursors (last ai_event id posted), so a restart neither loses nor repeats.
CREATE TABLE IF NOT EXISTS `ai_bridge_cursor` (
  `name` VARCHAR(40) NOT NULL,
  `position` BIGINT UNSIGNED NOT NULL DEFAULT 0,
  `updated_at` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Players the bridge has seen near each AI NPC (from `char`), so that a bridge restart neither
-- repeats an arrival nor forgets a departure. `announced` is set once the NPC was told.
CREATE TABLE IF NOT EXISTS `ai_presence` (
  `npc_id` VARCHAR(40) NOT NULL,
  `char_id` INT UNSIGNED NOT NULL,
  `char_name` VARCHAR(30) NOT NULL,
  `since` BIGINT UNSIGNED NOT NULL,
  `announced` TINYINT UNSIGNED NOT NULL DEFAULT 0,
  PRIMARY KEY (`npc_id`, `char_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Game rows the API refused (a malformed event): kept with the reason instead of being lost.
CREATE TABLE IF NOT EXISTS `ai_event_rejected` (
  `event_id` BIGINT UNSIGNED NOT NULL,
  `reason` VARCHAR(255) NOT NULL,
  `created_at` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (`event_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Who the bridge last saw hold each castle (rAthena's `guild_castle`), and how many owners it has
-- seen the castle get: a change is posted once (its id counts the changes), also across restarts.
CREATE TABLE IF NOT EXISTS `ai_castle_owner` (
  `castle_id` INT UNSIGNED NOT NULL,
  `guild_id` INT UNSIGNED NOT NULL DEFAULT 0,
  `changes` INT UNSIGNED NOT NULL DEFAULT 0,
  `updated_at` DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (`castle_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
