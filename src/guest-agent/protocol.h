/*
 * The guest agent's wire format, shared by nothing but this agent: the host side is
 * src/AgentSandbox.Core/Guest/AgentFrames.cs, which must say the same.
 *
 * Every frame: u32 length (of what follows), u8 kind, u32 id, then the payload. Integers are
 * little-endian; a string is a u32 length and its bytes (no NUL). The id names one command; 0
 * is the agent itself.
 */
#ifndef AGENTSANDBOX_PROTOCOL_H
#define AGENTSANDBOX_PROTOCOL_H

#define AS_PROTOCOL_VERSION 1u
#define AS_MAX_FRAME (1u << 20) /* anything longer is a broken stream, not a frame */
#define AS_CHUNK 65536u         /* output is sent in pieces of at most this much */

/* Host to agent. */
enum {
    AS_HELLO = 0x01,  /* u32 version */
    AS_EXEC = 0x02,   /* u32 flags, u32 uid, u32 gid, u32 ngroups + u32 each, str cwd, u32 argc + str each, u32 envc + str each ("NAME=value") */
    AS_STDIN = 0x03,  /* bytes; none: end of input */
    AS_SIGNAL = 0x04, /* u32 signal, to every process the command started */
    AS_PING = 0x05,
    AS_CONFIGURE = 0x06, /* str host name, u32 seconds since 1970 (low, high), str process limit ("max" or a number), then entropy bytes (at most 512) */
};

/* Agent to host. */
enum {
    AS_WELCOME = 0x81, /* u32 version, str what the agent runs on (uname) */
    AS_STARTED = 0x82, /* u32 pid */
    AS_STDOUT = 0x83,  /* bytes */
    AS_STDERR = 0x84,  /* bytes */
    AS_EXITED = 0x85,  /* i32 exit code (128 + signal when killed), u32 signal (0: it exited) */
    AS_FAILED = 0x86,  /* str why: the command did not start (or the frame was refused) */
    AS_PONG = 0x87,       /* also: Configure done */
};

/* AS_EXEC flags. */
#define AS_EXEC_STDIN 0x1u /* input follows in AS_STDIN frames; without it stdin is /dev/null */

#endif
