//! `chat`: rooms and members, on topics. One module backs both:
//!
//! - a room (`chat/lobby`) takes `say NAME TEXT` and publishes `NAME: TEXT`
//!   on its topic `lines` (`chat/lobby/lines`), replying with the line's
//!   number; the room's order is the order of its lines;
//! - a member (`chat/ann`) takes `join ROOM` (it subscribes to
//!   `chat/ROOM/lines`) and `leave ROOM`; each line of a room it joined comes
//!   to it once, in order, and it keeps the last 100; `get` replies with
//!   them, one per line.

use serde::{Deserialize, Serialize};

/// Lines a member keeps.
const KEEP: usize = 100;

#[derive(Default, Serialize, Deserialize)]
struct Chat {
    /// As a room: lines said in it.
    said: u64,
    /// As a member: the rooms joined, and the last lines that came.
    rooms: Vec<String>,
    lines: Vec<String>,
}

fn main() {
    orb_guest::actor::<Chat, String, String, String>(|chat, message, ctx, effects| {
        if let Some(topic) = &ctx.topic {
            // A line of a room this member joined.
            chat.lines.push(message);
            if chat.lines.len() > KEEP {
                chat.lines.remove(0);
            }
            return Ok(format!("{} lines from {topic}", chat.lines.len()));
        }
        let words: Vec<&str> = message.splitn(3, ' ').collect();
        match words.as_slice() {
            ["say", name, text] => {
                chat.said += 1;
                effects.publish("lines", format!("{name}: {text}"));
                Ok(chat.said.to_string())
            }
            ["join", room] => {
                effects.subscribe(format!("chat/{room}/lines"));
                if !chat.rooms.iter().any(|r| r == room) {
                    chat.rooms.push((*room).to_owned());
                }
                Ok(format!("joined {room}"))
            }
            ["leave", room] => {
                effects.unsubscribe(format!("chat/{room}/lines"));
                chat.rooms.retain(|r| r != room);
                Ok(format!("left {room}"))
            }
            ["get"] => Ok(chat.lines.join("\n")),
            _ => Err("say NAME TEXT (a room), join ROOM, leave ROOM or get (a member)".into()),
        }
    });
}
