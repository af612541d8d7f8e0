import netweave


async def test_tcp_echo_round_trip() -> None:
    async def echo(channel: netweave.Channel[bytes]) -> None:
        async for message in channel:
            await channel.send(message)

    async with netweave.serve("tcp://127.0.0.1:0", "lp4,raw", echo) as server:
        channel = await netweave.connect(server.url, "lp4,raw")
        async with channel:
            for i in range(3):
                await channel.send(b"hello %d" % i)
            assert [await channel.receive() for _ in range(3)] == [
                b"hello 0",
                b"hello 1",
                b"hello 2",
            ]
