"""FastAPI app writing a user and its welcome job in one transaction: ``uvicorn app:app``.

The job is a row of errands_outbox, committed with the user (or rolled back with it); the
worker pool's relay moves it into Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from jobs import engine
from sqlalchemy import String
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from errands.contrib.sqlalchemy_outbox import create_outbox_table, enqueue_in_outbox


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)


Sessions = async_sessionmaker(engine)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.run_sync(create_outbox_table)
    yield


app = FastAPI(lifespan=lifespan)


@app.post("/signup")
async def signup(email: str) -> dict[str, str]:
    async with Sessions() as session, session.begin():
        user = User(email=email)
        session.add(user)
        await session.flush()  # user.id
        job_id = enqueue_in_outbox(session, "send_welcome", {"user_id": user.id, "email": email})
        if "@" not in email:  # the transaction rolls back: no user, no job
            raise HTTPException(400, "not an email address")
    return {"job_id": job_id}
